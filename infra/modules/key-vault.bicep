// The Key Vault that holds every secret the handler reads (TOKEN_SIGNING_KEY, CALLBACK_SIGNING_KEY, and
// whatever providers' API keys and tokens are added). The app settings only hold Key Vault references
// (@Microsoft.KeyVault(SecretUri=...)), which the platform resolves with the app's managed identity; the
// app gets Key Vault Secrets User in app-roles.bicep. RBAC only: no access policies.

param location string
param tags object
param name string

@description('App setting names whose values are secrets, in the order of their values.')
param secretNames array

@description('App setting name to secret value. Each becomes a secret named after the setting (lowercase, dashes).')
@secure()
param secretValues object

@description('Purge protection: a deleted vault and its secrets stay recoverable for 90 days and cannot be purged. Off only for short-lived test environments that are deleted and recreated under the same name.')
param purgeProtection bool = true

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the app has no VNet; Key Vault references are resolved from its outbound addresses, and every read needs an Entra ID role
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109
  // checkov:skip=CKV_AZURE_110: purge protection is the purgeProtection parameter, on by default
  // checkov:skip=CKV_AZURE_42: soft delete is always on; purge protection is the purgeProtection parameter, on by default
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Purge protection cannot be turned off once on; null leaves it off rather than sending false.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Key Vault references are resolved from the app's outbound addresses, which are not a trusted
      // service; access needs an Entra ID role either way.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for secretName in secretNames: {
    // checkov:skip=CKV_AZURE_41: an expiring signing key would silently stop token verification or callbacks; keys are rotated by provisioning a new value (docs/deploy.md)
    parent: vault
    name: replace(toLower(secretName), '_', '-')
    properties: {
      value: secretValues[secretName]
      contentType: 'text/plain'
      attributes: { enabled: true }
    }
  }
]

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
// Versionless references: the platform picks up a new version of a secret within a day, or at once on restart.
output references array = [
  for (secretName, i) in secretNames: {
    name: secretName
    value: '@Microsoft.KeyVault(SecretUri=${secrets[i].properties.secretUri})'
  }
]
