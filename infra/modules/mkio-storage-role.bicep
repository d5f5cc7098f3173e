// Storage Blob Data Contributor for the function app's identity on the storage account registered in an
// MK.IO project. The handler copies finished outputs between projects through that storage: with this role
// it gets user delegation keys (generateUserDelegationKey) and signs its own short-lived SAS, so no SAS has
// to be configured or rotated. Deployed in the storage account's resource group.

param principalId string

@description('Name of the storage account registered in the MK.IO project.')
param storageAccountName string

// Storage Blob Data Contributor: read, write and list blobs, and generateUserDelegationKey.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
