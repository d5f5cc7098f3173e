// Lets an Event Grid system topic's identity write dead letters into the app's dead-letter container.

param storageAccountName string
param containerName string
param topicPrincipalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobs 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: containerName
    }
  }
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobs::container.id, topicPrincipalId, storageBlobDataContributor)
  scope: storage::blobs::container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
