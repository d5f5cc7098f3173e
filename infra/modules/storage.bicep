// The app's storage account: Functions host state (AzureWebJobsStorage), the handler's tables, the Flex
// Consumption deployment package container and the Event Grid dead-letter container. Shared key access is
// off: every client (host, handler, Event Grid, azd) uses Entra ID.

param location string
param tags object
param name string

@description('Blob container that holds the deployment package (Flex Consumption reads it with the app identity).')
param deploymentContainerName string

@description('Blob container where Event Grid writes events it could not deliver.')
param deadLetterContainerName string

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS', 'Standard_RAGZRS'])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Event Grid delivers dead letters as a trusted Azure service.
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobs 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: { enabled: true, days: 7 }
      containerDeleteRetentionPolicy: { enabled: true, days: 7 }
    }

    resource deployment 'containers' = {
      name: deploymentContainerName
      properties: { publicAccess: 'None' }
    }

    resource deadLetter 'containers' = {
      name: deadLetterContainerName
      properties: { publicAccess: 'None' }
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
// Without the trailing slash, as the handler joins table names to it.
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'
output deploymentContainerName string = deploymentContainerName
output deadLetterContainerName string = deadLetterContainerName
