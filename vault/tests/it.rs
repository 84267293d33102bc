//! The vault on both backends: sealing, opening, erasure by shredding, rotation.

use domain::{Address, CustomerId, PersonalData, SealedPersonalData};
use serde_json::json;
use store::{AppendRequest, Database, ExpectedVersion, Metadata, NewEvent, StoreError};
use vault::{MasterKey, Opened, Vault, VaultError};

fn ada() -> CustomerId {
    CustomerId::parse("ada").unwrap()
}

fn data() -> PersonalData {
    PersonalData::new(
        Some(Address {
            name: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        }),
        Some("ada@example.org".into()),
    )
    .unwrap()
}

fn erased_event(customer: &CustomerId, expected: ExpectedVersion) -> AppendRequest {
    let event = NewEvent::new("PersonalDataErased", 1, json!({ "customer_id": customer.as_str() }), Metadata::default());
    AppendRequest::single(customer.stream_id(), expected, vec![event])
}

async fn open(database: &Database, master: &str, previous: &[&str]) -> Vault {
    let previous = previous.iter().map(|k| MasterKey::from_hex(k).unwrap()).collect();
    Vault::new(database.keys(), MasterKey::from_hex(master).unwrap(), previous)
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let url = store::testing::postgres().await.url;
                super::$name(store::open(&url).await.unwrap()).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(store::open(&store::testing::sqlite()).await.unwrap()).await;
            })*
        }
    };
}

on_both_backends!(
    sealed_data_opens_and_shows_no_plaintext,
    shredding_erases_every_copy_and_a_later_key_opens_only_later_data,
    a_shred_whose_append_fails_keeps_the_key,
    tampered_or_moved_ciphertext_does_not_open,
    rotation_rewraps_every_key_with_the_new_master_key,
    racing_first_seals_agree_on_one_key,
    several_keys_read_at_once_open_their_own_data_only,
);

async fn sealed_data_opens_and_shows_no_plaintext(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let sealed = vault.seal(&ada(), &data()).await.unwrap();
    for plain in ["Ada", "Lovelace", "London", "SW1Y", "ada@example.org", "example"] {
        assert!(!sealed.as_str().contains(plain), "{plain} in {}", sealed.as_str());
    }
    assert_eq!(vault.open(&ada(), &sealed).await.unwrap(), Opened::Data(data()));
    // Two seals of the same data differ (fresh nonces), under one key.
    let again = vault.seal(&ada(), &data()).await.unwrap();
    assert_ne!(again, sealed);
    assert_eq!(again.as_str().split('.').nth(1), sealed.as_str().split('.').nth(1));
    let stored = db.keys().data_key("ada").await.unwrap().unwrap();
    assert!(!stored.wrapped.windows(4).any(|w| w == b"Ada "), "the wrapped key is not the data");
}

async fn shredding_erases_every_copy_and_a_later_key_opens_only_later_data(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let before = vault.seal(&ada(), &data()).await.unwrap();
    let bob = CustomerId::parse("bob").unwrap();
    let bobs = vault.seal(&bob, &data()).await.unwrap();
    assert!(vault.holds_key(&ada()).await.unwrap());

    let outcome = db.keys().shred("ada", erased_event(&ada(), ExpectedVersion::NoStream)).await.unwrap();
    assert_eq!(outcome.positions.len(), 1);
    assert_eq!(db.store().stream_version(&ada().stream_id()).await.unwrap(), 1);
    assert!(!vault.holds_key(&ada()).await.unwrap());
    assert_eq!(vault.open(&ada(), &before).await.unwrap(), Opened::Erased);
    assert_eq!(
        vault.open(&bob, &bobs).await.unwrap(),
        Opened::Data(data()),
        "other customers are untouched"
    );

    let after = vault.seal(&ada(), &data()).await.unwrap();
    assert_eq!(vault.open(&ada(), &after).await.unwrap(), Opened::Data(data()));
    assert_eq!(
        vault.open(&ada(), &before).await.unwrap(),
        Opened::Erased,
        "a new key never opens old data"
    );
}

async fn a_shred_whose_append_fails_keeps_the_key(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let sealed = vault.seal(&ada(), &data()).await.unwrap();
    let failed = db.keys().shred("ada", erased_event(&ada(), ExpectedVersion::Exact(3))).await;
    assert!(matches!(failed, Err(StoreError::Conflict { .. })), "{failed:?}");
    assert_eq!(vault.open(&ada(), &sealed).await.unwrap(), Opened::Data(data()));
    assert_eq!(db.store().stream_version(&ada().stream_id()).await.unwrap(), 0);
}

async fn tampered_or_moved_ciphertext_does_not_open(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let sealed = vault.seal(&ada(), &data()).await.unwrap();
    let mut text = sealed.as_str().to_owned();
    let last = text.pop().unwrap();
    text.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = vault.open(&ada(), &SealedPersonalData::new(text)).await;
    assert!(matches!(tampered, Err(VaultError::Corrupt(_))), "{tampered:?}");
    // Bob's key has another id: Ada's ciphertext on Bob's order opens as nothing.
    let bob = CustomerId::parse("bob").unwrap();
    vault.seal(&bob, &data()).await.unwrap();
    assert_eq!(vault.open(&bob, &sealed).await.unwrap(), Opened::Erased);
    let garbage = vault.open(&ada(), &SealedPersonalData::new("v2.x.y".into())).await;
    assert!(matches!(garbage, Err(VaultError::Corrupt(_))), "{garbage:?}");
}

async fn rotation_rewraps_every_key_with_the_new_master_key(db: Database) {
    let (old, new) = (MasterKey::generate_hex(), MasterKey::generate_hex());
    let before = open(&db, &old, &[]).await;
    let customers: Vec<CustomerId> = (0..5).map(|i| CustomerId::parse(&format!("c{i}")).unwrap()).collect();
    let mut sealed = vec![];
    for c in &customers {
        sealed.push(before.seal(c, &data()).await.unwrap());
    }
    let without_old = open(&db, &new, &[]).await;
    let refused = without_old.open(&customers[0], &sealed[0]).await;
    assert!(matches!(refused, Err(VaultError::UnknownMasterKey { .. })), "{refused:?}");

    let rotating = open(&db, &new, &[&old]).await;
    assert_eq!(rotating.rotate(2).await.unwrap(), 5);
    assert_eq!(rotating.rotate(2).await.unwrap(), 0, "repeating it has nothing left to do");
    for (c, s) in customers.iter().zip(&sealed) {
        assert_eq!(without_old.open(c, s).await.unwrap(), Opened::Data(data()));
    }
}

async fn racing_first_seals_agree_on_one_key(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let vault = vault.clone();
            tokio::spawn(async move { vault.seal(&ada(), &data()).await.unwrap() })
        })
        .collect();
    let mut sealed = vec![];
    for t in tasks {
        sealed.push(t.await.unwrap());
    }
    for s in &sealed {
        assert_eq!(vault.open(&ada(), s).await.unwrap(), Opened::Data(data()));
    }
}

async fn several_keys_read_at_once_open_their_own_data_only(db: Database) {
    let vault = open(&db, &MasterKey::generate_hex(), &[]).await;
    let bob = CustomerId::parse("bob").unwrap();
    let (adas, bobs) = (vault.seal(&ada(), &data()).await.unwrap(), vault.seal(&bob, &data()).await.unwrap());
    let keys = vault.data_keys(&["ada".into(), "bob".into(), "nobody".into()]).await.unwrap();
    let key_of = |who: &str| keys.iter().find(|k| k.subject == who);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(vault.open_with(&ada(), &adas, key_of("ada")).unwrap(), Opened::Data(data()));
    assert_eq!(vault.open_with(&bob, &bobs, key_of("bob")).unwrap(), Opened::Data(data()));
    assert_eq!(
        vault.open_with(&ada(), &adas, key_of("bob")).unwrap(),
        Opened::Erased,
        "another customer's key opens nothing"
    );
    assert_eq!(vault.open_with(&ada(), &adas, None).unwrap(), Opened::Erased);
}
