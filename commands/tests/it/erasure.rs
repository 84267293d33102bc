//! Erasing personal data: the key goes with the event that records it; repeating the
//! request answers the earlier erasure unless something was sealed since.

use commands::Commands;
use domain::{CustomerId, PersonalData};
use store::Database;
use vault::{MasterKey, Opened, Vault};

use crate::support::ctx;

async fn erasure_is_recorded_once_and_again_only_after_new_data(db: Database) {
    let commands = Commands::new(db.store());
    let vault = Vault::new(db.keys(), MasterKey::from_hex(&MasterKey::generate_hex()).unwrap(), vec![]);
    let ada = CustomerId::parse("ada").unwrap();
    let data = PersonalData::new(None, Some("ada@example.org".into())).unwrap();
    let sealed = vault.seal(&ada, &data).await.unwrap();

    let first = commands.erase_personal_data(&ctx("ada"), &vault, &ada).await.unwrap();
    assert!(!first.repeated);
    assert_eq!(vault.open(&ada, &sealed).await.unwrap(), Opened::Erased);
    let again = commands.erase_personal_data(&ctx("ada"), &vault, &ada).await.unwrap();
    assert!(again.repeated);
    assert_eq!((again.erased_at, again.position), (first.erased_at, first.position));
    assert_eq!(db.store().stream_version(&ada.stream_id()).await.unwrap(), 1);

    let later = vault.seal(&ada, &data).await.unwrap();
    let second = commands.erase_personal_data(&ctx("ada"), &vault, &ada).await.unwrap();
    assert!(!second.repeated);
    assert!(second.position > first.position);
    assert_eq!(vault.open(&ada, &later).await.unwrap(), Opened::Erased);
    assert_eq!(db.store().stream_version(&ada.stream_id()).await.unwrap(), 2);
}

mod postgres {
    #[tokio::test]
    async fn erasure_is_recorded_once_and_again_only_after_new_data() {
        let url = store::testing::postgres().await.url;
        super::erasure_is_recorded_once_and_again_only_after_new_data(store::open(&url).await.unwrap()).await;
    }
}

mod sqlite {
    #[tokio::test]
    async fn erasure_is_recorded_once_and_again_only_after_new_data() {
        let url = store::testing::sqlite();
        super::erasure_is_recorded_once_and_again_only_after_new_data(store::open(&url).await.unwrap()).await;
    }
}
