// Function keys that separate the client API from the operator API: a key named `client` on every client
// function and a key named `operator` on every operator function. A function key opens only its own
// function, so a client key cannot read GetStatus or drain a region, and an operator key cannot submit jobs.
// (Host keys open every function, and the master key the admin API: neither is handed out.)
//
// The documented shape puts `value` at the top level; the resource provider only accepts it inside
// `properties` (MicrosoftDocs/azure-docs#66001, Azure/bicep#7272), which is what this sends.

param functionAppName string

@description('Functions that get the `client` key.')
param clientFunctions array

@description('Functions that get the `operator` key.')
param operatorFunctions array

@description('Value of the `client` key, the same on every client function; empty: each function gets a generated one.')
@secure()
param clientKey string = ''

@description('Value of the `operator` key, the same on every operator function; empty: each function gets a generated one.')
@secure()
param operatorKey string = ''

resource clientKeys 'Microsoft.Web/sites/functions/keys@2024-04-01' = [
  for f in clientFunctions: {
    name: '${functionAppName}/${f}/client'
    properties: empty(clientKey) ? { name: 'client' } : { name: 'client', value: clientKey }
  }
]

resource operatorKeys 'Microsoft.Web/sites/functions/keys@2024-04-01' = [
  for f in operatorFunctions: {
    name: '${functionAppName}/${f}/operator'
    properties: empty(operatorKey) ? { name: 'operator' } : { name: 'operator', value: operatorKey }
  }
]
