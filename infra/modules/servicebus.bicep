// Service Bus namespace with the `alerts` queue that the functions' `alerts` output binding writes to.
// SAS keys are disabled: the Functions host sends with the app's managed identity.

param location string
param tags object
param name string
param queueName string = 'alerts'

@allowed(['Basic', 'Standard', 'Premium'])
param skuName string = 'Standard'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: { name: skuName, tier: skuName }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }

  resource queue 'queues' = {
    name: queueName
    properties: {
      // Alerts are for people: keep them two weeks, dead-letter what nobody read.
      defaultMessageTimeToLive: 'P14D'
      deadLetteringOnMessageExpiration: true
      maxDeliveryCount: 10
      lockDuration: 'PT1M'
    }
  }
}

output id string = namespace.id
output name string = namespace.name
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (or the sovereign cloud's suffix).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output queueName string = namespace::queue.name
