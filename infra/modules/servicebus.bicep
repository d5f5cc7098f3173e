// Service Bus namespace with the `alerts` queue that the functions' `alerts` output binding writes to, and
// the `job-events` topic the handler publishes every job's outcome to (REST API, see docs/notifications.md).
// SAS keys are disabled: the host and the handler send with the app's managed identity.

param location string
param tags object
param name string
param queueName string = 'alerts'

@description('Topic of the outcome notifications.')
param topicName string = 'job-events'

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

  resource topic 'topics' = {
    name: topicName
    properties: {
      // A message sent again under the same MessageId ({jobId}:{type}), after a crash or by two instances,
      // is dropped: subscribers get each outcome once. The window is the longest Service Bus allows, far
      // longer than any retry of the handler's outbox. It cannot be turned on after creation.
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'P7D'
      defaultMessageTimeToLive: 'P14D'
      supportOrdering: false
      enableBatchedOperations: true
    }

    // Keeps every event until applications add their own (filtered) subscriptions; delete it when unused.
    resource all 'subscriptions' = {
      name: 'all'
      properties: {
        defaultMessageTimeToLive: 'P14D'
        deadLetteringOnMessageExpiration: true
        maxDeliveryCount: 10
        lockDuration: 'PT1M'
      }
    }
  }
}

output id string = namespace.id
output name string = namespace.name
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (or the sovereign cloud's suffix).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output queueName string = namespace::queue.name
output topicName string = namespace::topic.name
