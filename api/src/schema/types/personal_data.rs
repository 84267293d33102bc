//! Personal data in the contract: the address and email a customer gives with an order,
//! shown only while their data key exists (see the `vault` crate).
//!
//! Objects carry the data sealed, as the event or read model holds it, and open it only
//! when a client selects one of its fields: once per object, however many fields ask, with
//! the keys of all objects resolved together read at once ([`KeyLoader`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};

use async_graphql::{Context, InputObject, SimpleObject};
use domain::{CustomerId, PersonalData, SealedPersonalData};
use store::DataKey;
use tokio::sync::OnceCell;
use vault::{Opened, Vault};

use super::super::api;
use crate::error::ApiError;

/// A delivery address (as input: `AddressInput`, the same fields).
#[derive(Clone, Debug, InputObject, SimpleObject)]
#[graphql(input_name = "AddressInput")]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `GB`.
    pub country: String,
}

impl From<Address> for domain::Address {
    fn from(a: Address) -> Self {
        let Address {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        } = a;
        domain::Address {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        }
    }
}

impl From<&domain::Address> for Address {
    fn from(a: &domain::Address) -> Self {
        let domain::Address {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        } = a.clone();
        Address {
            name,
            line1,
            line2,
            city,
            postal_code,
            country,
        }
    }
}

/// Sealed personal data of one object, opened at most once.
#[derive(Clone, Debug)]
pub struct Sealed {
    customer: String,
    sealed: Option<SealedPersonalData>,
    /// The read model already knows it was erased.
    erased: bool,
    opened: Arc<OnceCell<Opened>>,
}

impl Sealed {
    pub fn new(customer: &str, sealed: Option<SealedPersonalData>, erased: bool) -> Self {
        Sealed {
            customer: customer.to_owned(),
            sealed,
            erased,
            opened: Arc::default(),
        }
    }

    /// The data, `None` when there is none or it was erased.
    pub async fn data(&self, ctx: &Context<'_>) -> Result<Option<&PersonalData>, ApiError> {
        match self.open(ctx).await? {
            Some(Opened::Data(data)) => Ok(Some(data)),
            _ => Ok(None),
        }
    }

    /// Erased: the read model says so, or the key that sealed it is gone (the read model
    /// may not have caught up with the erasure yet; the key's deletion is immediate).
    pub async fn erased(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        Ok(self.erased || matches!(self.open(ctx).await?, Some(Opened::Erased)))
    }

    async fn open(&self, ctx: &Context<'_>) -> Result<Option<&Opened>, ApiError> {
        let Some(sealed) = &self.sealed else {
            return Ok(None);
        };
        let opened = self
            .opened
            .get_or_try_init(|| async {
                let customer = CustomerId::parse(&self.customer)?;
                let stored = key_loader(ctx)?.load_one(self.customer.clone()).await?;
                Ok::<_, ApiError>(api(ctx)?.vault.open_with(&customer, sealed, stored.as_ref())?)
            })
            .await?;
        Ok(Some(opened))
    }
}

/// Reads the data keys of every customer whose personal data is being opened at the same
/// moment (a page of orders or notifications) in one statement.
pub struct KeyLoader {
    vault: Vault,
}

impl KeyLoader {
    pub fn new(vault: Vault) -> Self {
        KeyLoader { vault }
    }
}

impl Loader<String> for KeyLoader {
    type Value = DataKey;
    type Error = ApiError;

    async fn load(&self, customers: &[String]) -> Result<HashMap<String, DataKey>, ApiError> {
        let keys = self.vault.data_keys(customers).await?;
        Ok(keys.into_iter().map(|key| (key.subject.clone(), key)).collect())
    }
}

fn key_loader<'a>(ctx: &Context<'a>) -> Result<&'a DataLoader<KeyLoader>, ApiError> {
    ctx.data_opt::<DataLoader<KeyLoader>>()
        .ok_or_else(|| ApiError::internal("the schema was built without the key loader"))
}
