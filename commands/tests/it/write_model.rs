//! The write model against real stores: concurrent writers without an expected version
//! all apply, expected versions are enforced (never from a stale cache), idempotent
//! repeats return the first outcome, a warm add costs one read and one append, commands
//! queued together are appended together and keep their own outcomes, ownership is
//! checked on the loaded state, placing orders re-decides on concurrent stock changes.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use commands::{load, CartAggregate, CommandContext, CommandError, Commands, ProductAggregate};
use domain::{CartCommand, CartId, DomainError, Money, OrderId, ProductCommand};
use store::EventStore;
use uuid::Uuid;

fn add_one(sku_name: &str) -> CartCommand {
    CartCommand::AddItem {
        sku: sku(sku_name),
        quantity: 1,
        name: "Tea".into(),
        unit_price: Money::from_minor(100),
    }
}

async fn quantity(store: &dyn EventStore, cart: CartId, sku_name: &str) -> u32 {
    let cart = load::<CartAggregate>(store, &cart.stream_id()).await.unwrap().state.unwrap();
    cart.line(&sku(sku_name)).map_or(0, |l| l.quantity)
}

async fn concurrent_adds_without_expected_version_all_apply(store: Arc<dyn EventStore>) {
    // Two "processes" (two write models) on one store, ten writers each.
    let a = Commands::new(store.clone());
    let b = Commands::new(store.clone());
    let cart = create_cart(&a, "alice").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let commands = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { commands.cart(&ctx("alice"), cart, None, add_one("tea")).await },
        ));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().expect("every add applies").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=21).collect::<Vec<_>>(), "each add has its own version");
    assert_eq!(quantity(store.as_ref(), cart, "tea").await, 20);
}

async fn an_expected_version_conflict_says_both_versions(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    let cart = create_cart(&commands, "alice").await;
    commands.cart(&ctx("alice"), cart, None, add_one("tea")).await.unwrap();
    let error = commands.cart(&ctx("alice"), cart, Some(1), add_one("tea")).await.unwrap_err();
    assert!(matches!(error, CommandError::Conflict { expected: 1, actual: 2 }), "{error:?}");
    let done = commands.cart(&ctx("alice"), cart, Some(2), add_one("tea")).await.unwrap();
    assert_eq!(done.version, 3);
}

async fn an_idempotent_repeat_returns_the_first_outcome(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    let cart = create_cart(&commands, "alice").await;
    let context = CommandContext {
        idempotency_key: Some("k-1".into()),
        fingerprint: "add tea 1".into(),
        ..ctx("alice")
    };
    let first = commands.cart(&context, cart, None, add_one("tea")).await.unwrap();
    commands.cart(&ctx("alice"), cart, None, add_one("mug")).await.unwrap();
    // Stream versions, not the feed's head: the head may lag behind other tests' transactions.
    let before = store.stream_version(&cart.stream_id()).await.unwrap();
    // Through another write model too: the store holds the outcome, not a cache.
    for again in [
        commands.cart(&context, cart, None, add_one("tea")).await.unwrap(),
        Commands::new(store.clone()).cart(&context, cart, None, add_one("tea")).await.unwrap(),
    ] {
        assert!(again.replayed && !first.replayed);
        assert_eq!(
            (again.version, again.position, &again.state),
            (first.version, first.position, &first.state)
        );
    }
    assert_eq!(
        store.stream_version(&cart.stream_id()).await.unwrap(),
        before,
        "the repeat appended nothing"
    );
    let reused = CommandContext {
        fingerprint: "something else".into(),
        ..context
    };
    let error = commands.cart(&reused, cart, None, add_one("tea")).await.unwrap_err();
    assert!(matches!(error, CommandError::IdempotencyKeyReused), "{error:?}");
}

async fn a_warm_add_costs_one_read_and_one_append(store: Arc<dyn EventStore>) {
    let counting = Counting::wrap(store);
    let commands = Commands::new(counting.clone());
    register(&commands, "tea", 250, 10).await;
    let cart = create_cart(&commands, "alice").await;
    commands.add_item(&ctx("alice"), cart, sku("tea"), 1, None).await.unwrap();
    counting.take();
    for n in 2..=4 {
        let done = commands.add_item(&ctx("alice"), cart, sku("tea"), 1, None).await.unwrap();
        assert_eq!(
            done.state.unwrap().line(&sku("tea")).map(|l| (l.quantity, l.unit_price)),
            Some((n, Money::from_minor(250)))
        );
        assert_eq!(counting.take(), (1, 1), "add {n}: one read (the product's tail) and one append");
    }
    // The product's current price is read each time, even when another process changed it.
    Commands::new(counting.clone())
        .execute::<ProductAggregate, _, _>(&ctx("admin"), &sku("tea").stream_id(), None, |s| {
            domain::product::decide(
                s,
                ProductCommand::ChangePrice {
                    price: Money::from_minor(300),
                },
            )
        })
        .await
        .unwrap();
    counting.take();
    let done = commands.add_item(&ctx("alice"), cart, sku("mug-less-tea"), 1, None).await.unwrap_err();
    assert!(
        matches!(done, CommandError::NotFound(ref what) if what == "product mug-less-tea"),
        "{done:?}"
    );
    let done = commands.add_item(&ctx("alice"), cart, sku("tea"), 1, None).await.unwrap();
    let cart_state = done.state.unwrap();
    assert_eq!(cart_state.line(&sku("tea")).map(|l| l.quantity), Some(5));
}

async fn commands_queued_together_are_appended_together_with_their_own_outcomes(store: Arc<dyn EventStore>) {
    let counting = Counting::wrap(store.clone());
    let commands = Commands::new(counting.clone());
    let cart = create_cart(&commands, "alice").await;
    counting.take();

    // The first command's append waits; the next ones queue up behind it.
    let held = counting.hold.write().await;
    let first = tokio::spawn({
        let commands = commands.clone();
        async move { commands.cart(&ctx("alice"), cart, None, add_one("tea")).await }
    });
    while counting.appends.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let alice = ctx("alice");
    let queued = futures::future::join_all([
        commands.cart(&alice, cart, None, add_one("tea")),
        commands.cart(&alice, cart, None, CartCommand::Remove { sku: sku("cup") }),
        commands.cart(&alice, cart, Some(1), add_one("mug")),
        commands.cart(&alice, cart, Some(3), add_one("mug")),
        commands.cart(&alice, cart, None, add_one("mug")),
    ]);
    tokio::pin!(queued);
    // One poll submits all five to the mailbox, in order.
    assert!(futures::poll!(&mut queued).is_pending());
    drop(held);
    let first = first.await.unwrap().unwrap();
    let outcomes = queued.await;
    assert_eq!(first.version, 2);
    let (_, appends) = counting.take();
    assert_eq!(appends, 2, "the first command, then the five queued behind it in one append");

    let [tea, cup, stale, mug, mug_again] = <[_; 5]>::try_from(outcomes).unwrap();
    let tea = tea.unwrap();
    assert!(matches!(cup, Err(CommandError::Domain(DomainError::ItemNotInCart { .. }))), "{cup:?}");
    assert!(matches!(stale, Err(CommandError::Conflict { expected: 1, actual: 3 })), "{stale:?}");
    let mug = mug.unwrap();
    let mug_again = mug_again.unwrap();
    assert_eq!((tea.version, mug.version, mug_again.version), (3, 4, 5));
    assert_eq!(tea.state.as_ref().unwrap().line(&sku("tea")).map(|l| l.quantity), Some(2));
    assert_eq!(tea.state.as_ref().unwrap().line(&sku("mug")), None, "each sees the state at its own turn");
    assert_eq!(mug_again.state.as_ref().unwrap().line(&sku("mug")).map(|l| l.quantity), Some(2));
    let events = store.read_stream(&cart.stream_id(), 3, 10).await.unwrap();
    let positions: Vec<_> = events.iter().map(|e| (e.version, e.position)).collect();
    assert_eq!(positions, vec![(3, tea.position), (4, mug.position), (5, mug_again.position)]);
}

async fn a_stale_cache_never_decides_an_answer(store: Arc<dyn EventStore>) {
    let a = Commands::new(store.clone());
    let b = Commands::new(store.clone());
    let alice = ctx("alice");
    let cart = create_cart(&a, "alice").await;
    a.cart(&alice, cart, None, add_one("tea")).await.unwrap(); // a caches version 2
    b.cart(&alice, cart, None, add_one("cup")).await.unwrap(); // version 3, unknown to a
                                                               // a's cache says no cup: it reads the tail before refusing, and removes it.
    let removed = a.cart(&alice, cart, None, CartCommand::Remove { sku: sku("cup") }).await.unwrap();
    assert_eq!(removed.version, 4);
    b.cart(&alice, cart, None, add_one("tea")).await.unwrap(); // version 5
                                                               // The client saw version 5 (from b); a's cache says 4: not a conflict.
    let done = a.cart(&alice, cart, Some(5), add_one("tea")).await.unwrap();
    assert_eq!(done.version, 6);
    b.cart(&alice, cart, None, add_one("tea")).await.unwrap(); // version 7
                                                               // Without an expected version, a's stale append conflicts, re-reads and re-decides.
    let done = a.cart(&alice, cart, None, add_one("tea")).await.unwrap();
    assert_eq!(done.version, 8);
    assert_eq!(done.state.as_ref().unwrap().line(&sku("tea")).map(|l| l.quantity), Some(5));
    // An expected version that really is stale is still a conflict, with the true version.
    b.cart(&alice, cart, None, add_one("tea")).await.unwrap(); // version 9
    let error = a.cart(&alice, cart, Some(8), add_one("tea")).await.unwrap_err();
    assert!(matches!(error, CommandError::Conflict { expected: 8, actual: 9 }), "{error:?}");
    assert_eq!(quantity(store.as_ref(), cart, "tea").await, 6);
}

async fn someone_elses_or_a_missing_cart_is_not_found(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    let cart = create_cart(&commands, "alice").await;
    for (who, cart, version) in [("bob", cart, 1), ("alice", CartId::from_uuid(Uuid::now_v7()), 0)] {
        let error = commands.cart(&ctx(who), cart, None, add_one("tea")).await.unwrap_err();
        assert!(matches!(error, CommandError::NotFound(ref what) if what == "cart"), "{error:?}");
        let order = OrderId::from_uuid(Uuid::now_v7());
        let error = commands.place_order(&ctx(who), cart, None, order, None).await.unwrap_err();
        assert!(matches!(error, CommandError::NotFound(ref what) if what == "cart"), "{error:?}");
        // Nothing was written: not to the cart, not to an order.
        assert_eq!(store.stream_version(&cart.stream_id()).await.unwrap(), version);
        assert_eq!(store.stream_version(&order.stream_id()).await.unwrap(), 0);
    }
}

async fn a_command_past_its_deadline_answers_timeout(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    let cart = create_cart(&commands, "alice").await;
    let late = CommandContext {
        budget: Some(Duration::ZERO),
        ..ctx("alice")
    };
    let error = commands.cart(&late, cart, None, add_one("tea")).await.unwrap_err();
    assert!(matches!(error, CommandError::Timeout), "{error:?}");
    assert_eq!(store.stream_version(&cart.stream_id()).await.unwrap(), 1, "nothing was written");
}

async fn placing_orders_re_decides_on_concurrent_stock_changes(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    register(&commands, "tea", 100, 8).await;
    let mut carts = Vec::new();
    for i in 0..8 {
        let customer = format!("c{i}");
        let cart = create_cart(&commands, &customer).await;
        commands.cart(&ctx(&customer), cart, None, add_one("tea")).await.unwrap();
        carts.push((customer, cart));
    }
    let mut tasks = Vec::new();
    for (i, (customer, cart)) in carts.into_iter().enumerate() {
        // Half through another write model (another process).
        let commands = if i % 2 == 0 { commands.clone() } else { Commands::new(store.clone()) };
        tasks.push(tokio::spawn(async move {
            commands
                .place_order(&ctx(&customer), cart, None, OrderId::from_uuid(Uuid::now_v7()), None)
                .await
        }));
    }
    // Deliveries land on the same product stream meanwhile.
    for _ in 0..4 {
        commands
            .execute::<ProductAggregate, _, _>(&ctx("admin"), &sku("tea").stream_id(), None, |s| {
                domain::product::decide(s, ProductCommand::ReceiveStock { quantity: 1 })
            })
            .await
            .unwrap();
    }
    for task in tasks {
        task.await.unwrap().expect("every order is placed despite the concurrent writes");
    }
    let tea = load::<ProductAggregate>(store.as_ref(), &sku("tea").stream_id())
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!((tea.on_hand, tea.reserved_total(), tea.available()), (12, 8, 4));
}

async fn out_of_stock_names_sku_requested_and_available(store: Arc<dyn EventStore>) {
    let commands = Commands::new(store.clone());
    register(&commands, "tea", 100, 2).await;
    let cart = create_cart(&commands, "alice").await;
    commands.add_item(&ctx("alice"), cart, sku("tea"), 3, None).await.unwrap();
    let order = OrderId::from_uuid(Uuid::now_v7());
    let error = commands.place_order(&ctx("alice"), cart, None, order, None).await.unwrap_err();
    match error {
        CommandError::Domain(DomainError::OutOfStock {
            sku: s,
            requested,
            available,
        }) => {
            assert_eq!((s.as_str(), requested, available), ("tea", 3, 2));
        }
        other => panic!("expected OUT_OF_STOCK, got {other:?}"),
    }
    // A rejected order appends nothing: to the cart, the product or an order.
    assert_eq!(store.stream_version(&cart.stream_id()).await.unwrap(), 2);
    assert_eq!(store.stream_version(&sku("tea").stream_id()).await.unwrap(), 2);
    assert_eq!(store.stream_version(&order.stream_id()).await.unwrap(), 0);
}

backends!(
    concurrent_adds_without_expected_version_all_apply,
    an_expected_version_conflict_says_both_versions,
    an_idempotent_repeat_returns_the_first_outcome,
    a_warm_add_costs_one_read_and_one_append,
    commands_queued_together_are_appended_together_with_their_own_outcomes,
    a_stale_cache_never_decides_an_answer,
    someone_elses_or_a_missing_cart_is_not_found,
    a_command_past_its_deadline_answers_timeout,
    placing_orders_re_decides_on_concurrent_stock_changes,
    out_of_stock_names_sku_requested_and_available,
);
