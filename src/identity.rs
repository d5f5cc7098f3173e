//! Entra ID tokens from the app's managed identity, shared by the ARM client and Table Storage.

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use std::sync::Arc;

/// The managed identity credential: the system-assigned identity, or the user-assigned one with this
/// client id. `azure_identity` caches tokens until shortly before they expire.
pub fn managed_identity(client_id: Option<&str>) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_owned())),
        ..Default::default()
    };
    let credential: Arc<dyn TokenCredential> = ManagedIdentityCredential::new(Some(options))?;
    Ok(credential)
}
