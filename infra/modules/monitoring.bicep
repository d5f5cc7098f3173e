// Log Analytics workspace and workspace-based Application Insights. Local (key) authentication is off:
// the app sends telemetry with its managed identity (Monitoring Metrics Publisher, see app-roles.bicep).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string

@description('Days the workspace keeps logs.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// The connection string names the resource (instrumentation key and ingestion endpoint); it is not a
// credential once local authentication is disabled.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output workspaceId string = workspace.id
