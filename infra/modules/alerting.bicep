// How an operator alert reaches a person. The handler logs every alert as one invocation log line
// `amsfo-alert {json}` (src/functions/mod.rs), which the Functions host sends to Application Insights; two
// log search alert rules look for those lines every five minutes and notify an action group with email and
// webhook receivers. One rule per severity: an empty rotation, a removed region and the last region left are
// urgent (a pager's webhook can filter on severity); the others can wait for working hours. Each alert line
// is its own dimension value, so every alert becomes its own notification carrying its summary, rather than
// "N results".

param location string
param tags object
param actionGroupName string
param ruleNamePrefix string

@description('Resource id of the Application Insights component the app logs to.')
param appInsightsId string

@description('Email addresses that receive the alerts.')
param emails array

@description('A webhook (PagerDuty, Opsgenie, a chat) that receives the alerts too, in the common alert schema; empty: none. Such URLs usually carry a token, hence secure.')
@secure()
param webhookUrl string = ''

@description('How often the rules look, and over how long: an alert reaches the receivers within about twice this.')
param frequency string = 'PT5M'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'amsfo-ops'
    enabled: true
    emailReceivers: [
      for (address, i) in emails: {
        name: 'email-${i}'
        emailAddress: trim(address)
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(webhookUrl) ? [] : [{ name: 'webhook', serviceUri: webhookUrl, useCommonAlertSchema: true }]
  }
}

// The alert lines, one row per alert: its type, account and one-line summary (type, account, region, job and
// reason, each once). The prefix may follow whatever the host puts before a log line.
var alertLines = 'traces | where message has "amsfo-alert {" | extend alert = parse_json(substring(message, indexof(message, "amsfo-alert {") + 12)) | extend type = tostring(alert.type), account = tostring(alert.account), summary = substring(tostring(alert.summary), 0, 256)'

var urgentTypes = '"NoHealthyAccount", "RegionRemoved", "LastAccountInRotation"'

var rules = [
  { suffix: 'urgent', severity: 1, filter: 'in', description: 'No account in rotation, a region removed, or the last region left.' }
  { suffix: 'other', severity: 3, filter: '!in', description: 'Failed jobs and callbacks, publication trouble, re-admissions, definition drift.' }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [
  for r in rules: {
    name: '${ruleNamePrefix}-${r.suffix}'
    location: location
    tags: tags
    properties: {
      displayName: 'ams-failover alert (${r.suffix})'
      description: r.description
      severity: r.severity
      enabled: true
      scopes: [appInsightsId]
      evaluationFrequency: frequency
      windowSize: frequency
      // Each alert is an event, not a condition that clears: nothing to resolve automatically.
      autoMitigate: false
      criteria: {
        allOf: [
          {
            query: '${alertLines} | where type ${r.filter} (${urgentTypes}) | project timestamp, type, account, summary'
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              { name: 'type', operator: 'Include', values: ['*'] }
              { name: 'account', operator: 'Include', values: ['*'] }
              { name: 'summary', operator: 'Include', values: ['*'] }
            ]
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: {
        actionGroups: [actionGroup.id]
      }
    }
  }
]

output actionGroupName string = actionGroup.name
output ruleNames array = [for (r, i) in rules: alertRules[i].name]
