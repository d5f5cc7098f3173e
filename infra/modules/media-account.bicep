// One existing Media Services account, deployed into the account's own resource group (and subscription):
// the app's role on the account, and the Event Grid system topic of the account.

@description('Media Services account name.')
param accountName string

@description('Azure region of the account; the system topic must live there too.')
param region string

@description('Principal id of the function app identity.')
param appPrincipalId string

@description('Name of the Event Grid system topic of the account. Azure allows one system topic per source: if the account already has one, give its name here.')
param systemTopicName string

@description('Streaming endpoint whose host name Traffic Manager fronts.')
param streamingEndpointName string = 'default'

param tags object = {}

// Contributor, scoped to this one account: the built-in Media Services roles are split so that none covers
// the product. "Media Services Media Operator" manages jobs, assets and locators but excludes
// streamingLocators/listContentKeys (needed to publish the same content key in every region) and
// "Media Services Policy Administrator" manages streaming and content key policies but cannot create
// jobs, assets or locators. Contributor on the account also covers the MRU settings of managed accounts.
var contributorRoleId = 'b24988ac-6180-42a0-ab57-2498f8a89b74'

resource account 'Microsoft.Media/mediaservices@2023-01-01' existing = {
  name: accountName
}

resource streamingEndpoint 'Microsoft.Media/mediaservices/streamingEndpoints@2022-11-01' existing = {
  parent: account
  name: streamingEndpointName
}

resource appOnAccount 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, contributorRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', contributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: region
  tags: tags
  // The topic writes dead letters to the app's storage account, which accepts no shared keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: account.id
    topicType: 'Microsoft.Media.MediaServices'
  }
}

output accountId string = account.id
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
output streamingHostName string = streamingEndpoint.properties.hostName
// Key delivery answers at https://<account>.keydelivery.<region>.media.azure.net.
output keyDeliveryHostName string = '${accountName}.keydelivery.${region}.media.azure.net'
