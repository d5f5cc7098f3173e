//! The HTTP clients' trust roots: Mozilla's set, compiled in (`webpki-root-certs`).
//!
//! Every endpoint the product calls in Azure (Table Storage, ARM, Service Bus, Key Vault, the managed-identity
//! endpoint, MK.IO, Ravnur, and callback hosts) presents a certificate from a public CA, so the compiled-in
//! set verifies them all, and start-up skips reading and parsing the system store, which was the largest
//! part of a cold start after the Table calls. A callback host behind a private CA is refused (see the
//! README's design decisions).

/// A client builder that trusts only the compiled-in roots.
pub fn client_builder() -> reqwest::ClientBuilder {
    let roots =
        webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::Client::builder().tls_certs_only(roots)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_roots_all_load_and_a_client_builds_from_them() {
        let all = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        let loaded = all.iter().filter(|der| reqwest::Certificate::from_der(der).is_ok()).count();
        assert!(all.len() > 100, "Mozilla's set holds over a hundred roots, not {}", all.len());
        assert_eq!(loaded, all.len(), "every root is a certificate reqwest accepts");
        assert!(super::client_builder().build().is_ok());
    }
}
