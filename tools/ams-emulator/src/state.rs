//! The shared emulator state: configuration, accounts with their resources,
//! and the event dispatcher. One mutex guards all accounts; every handler and
//! the ticker hold it only for short, non-async critical sections.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Config, Provider};
use crate::events::{Dispatcher, EventSource};
use crate::mkio;
use crate::model::{Account, Job, Mru};

/// All accounts, keyed by lowercase name (account names are case-insensitive).
#[derive(Debug, Default)]
pub struct State {
    /// Accounts by lowercase name.
    pub accounts: BTreeMap<String, Account>,
}

impl State {
    /// Looks an account up case-insensitively.
    pub fn account_mut(&mut self, name: &str) -> Option<&mut Account> {
        self.accounts.get_mut(&name.to_ascii_lowercase())
    }
}

/// Everything a request handler or the ticker needs.
pub struct Emulator {
    /// Validated configuration.
    pub config: Config,
    /// Event delivery.
    pub dispatcher: Dispatcher,
    /// Webhook delivery of the MK.IO projects.
    pub mkio: mkio::Webhooks,
    /// `http://127.0.0.1:PORT` as bound; URLs the emulator hands out (v2 endpoints, SAS URLs) start with it.
    pub base_url: String,
    state: Mutex<State>,
}

impl Emulator {
    /// Builds the emulator with every configured account healthy and empty, served at `base_url`.
    pub fn new(config: Config, base_url: String) -> Arc<Emulator> {
        let accounts = config
            .accounts
            .iter()
            .map(|a| {
                let mru = Mru::new(a.mru_mode, config.max_mru);
                let mut account = Account::with_mru(&a.name, &a.region, mru);
                if a.provider == Provider::Mkio {
                    mkio::init_account(&config, &mut account, &base_url);
                }
                (a.name.to_ascii_lowercase(), account)
            })
            .collect();
        let dispatcher = Dispatcher::new(config.event_endpoint.clone(), config.event_types.clone(), config.time_scale);
        let mkio = mkio::Webhooks::new(config.time_scale);
        Arc::new(Emulator { config, dispatcher, mkio, base_url, state: Mutex::new(State { accounts }) })
    }

    /// Locks the state. A poisoned lock is recovered: each critical section
    /// leaves the data consistent before anything that could panic.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Event topic and subject for a job of `account`.
    pub fn event_source(&self, account: &Account, job: &Job) -> EventSource {
        EventSource::new(&self.config.subscription, &self.config.resource_group, &account.name, job)
    }
}
