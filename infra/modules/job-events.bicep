// The Event Grid subscription that delivers one account's job events to OnJobStateChange: an Azure Media
// Services account's system topic (systemTopicName), or the custom topic of a Ravnur instance (customTopicName),
// which publishes the same AMS-schema events. Deployed into the topic's resource group.

@description('System topic of an AMS account; empty for a custom topic.')
param systemTopicName string = ''

@description('Custom topic of a Ravnur instance (eg-topic-<suffix>); empty for a system topic.')
param customTopicName string = ''

@description('Resource id of the function app.')
param functionAppId string

@description('Function that receives the events (the folder with the eventGridTrigger).')
param functionName string = 'OnJobStateChange'

@description('Resource id of the storage account that keeps events Event Grid gave up on (system topics only: their identity writes there).')
param deadLetterStorageId string = ''
param deadLetterContainerName string = ''

@description('Delivery attempts before an event is dead-lettered (1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event (1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Also deliver the generic Microsoft.Media.JobStateChange event (the handler accepts it, but the specific events carry the same state).')
param includeGenericJobStateChange bool = false

var jobEvents = [
  'Microsoft.Media.JobScheduled'
  'Microsoft.Media.JobProcessing'
  'Microsoft.Media.JobCanceling'
  'Microsoft.Media.JobFinished'
  'Microsoft.Media.JobCanceled'
  'Microsoft.Media.JobErrored'
]

var onCustomTopic = !empty(customTopicName)

// What both kinds of topic deliver, and how.
var delivery = {
  destination: {
    endpointType: 'AzureFunction'
    properties: {
      resourceId: '${functionAppId}/functions/${functionName}'
      // One event per invocation: a failed batch is redelivered whole (azure-contracts 2.3).
      maxEventsPerBatch: 1
      preferredBatchSizeInKilobytes: 64
    }
  }
  eventDeliverySchema: 'EventGridSchema'
  filter: {
    includedEventTypes: includeGenericJobStateChange ? concat(jobEvents, ['Microsoft.Media.JobStateChange']) : jobEvents
  }
  retryPolicy: {
    maxDeliveryAttempts: maxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!onCustomTopic) {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (!onCustomTopic) {
  parent: systemTopic
  name: 'ams-failover-jobs'
  properties: union(delivery, {
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  })
}

resource customTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = if (onCustomTopic) {
  name: customTopicName
}

resource customSubscription 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (onCustomTopic) {
  parent: customTopic
  name: 'ams-failover-jobs'
  properties: delivery
}

output name string = 'ams-failover-jobs'
