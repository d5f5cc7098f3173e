// A Traffic Manager profile in front of one host name per Media Services account (streaming origins or
// key delivery). Performance routing: every region publishes the same outputs under the same locator and
// content key ids, so any healthy region can serve any viewer, and the nearest one serves best; a region
// whose probe fails drops out of DNS answers. Priority routing would send every viewer to one region.

param name string
param tags object

@description('Unique DNS label: the profile answers at <label>.trafficmanager.net.')
param dnsLabel string

@description('One entry per account: { name, region, target } where target is the host name to front.')
param endpoints array

@description('Path probed over HTTPS on every endpoint.')
param probePath string

@description('Status codes that count as healthy.')
param expectedStatusCodeRanges array = [{ min: 200, max: 200 }]

@description('DNS TTL of the answers, in seconds; short so that viewers leave a failed region quickly.')
param ttl int = 30

resource profile 'Microsoft.Network/trafficmanagerprofiles@2022-04-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    profileStatus: 'Enabled'
    trafficRoutingMethod: 'Performance'
    dnsConfig: {
      relativeName: dnsLabel
      ttl: ttl
    }
    monitorConfig: {
      protocol: 'HTTPS'
      port: 443
      path: probePath
      intervalInSeconds: 30
      timeoutInSeconds: 10
      toleratedNumberOfFailures: 3
      expectedStatusCodeRanges: expectedStatusCodeRanges
    }
    endpoints: [
      for e in endpoints: {
        name: e.name
        type: 'Microsoft.Network/trafficManagerProfiles/externalEndpoints'
        properties: {
          endpointStatus: 'Enabled'
          target: e.target
          endpointLocation: e.region
          // The probe must present the origin's own host name, or the origin answers for no site.
          customHeaders: [{ name: 'Host', value: e.target }]
        }
      }
    ]
  }
}

output id string = profile.id
output fqdn string = profile.properties.dnsConfig.fqdn
output endpointNames array = [for e in endpoints: e.name]
