// The Event Grid subscription that delivers one Media Services account's job events to OnJobStateChange.
// Deployed into the account's resource group, on the account's system topic.

param systemTopicName string

@description('Resource id of the function app.')
param functionAppId string

@description('Function that receives the events (the folder with the eventGridTrigger).')
param functionName string = 'OnJobStateChange'

@description('Resource id of the storage account that keeps events Event Grid gave up on.')
param deadLetterStorageId string
param deadLetterContainerName string

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

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'ams-failover-jobs'
  properties: {
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
  }
}

output name string = subscription.name
