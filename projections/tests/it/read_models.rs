//! The read models answer what the events say, on both backends: carts with lines, orders,
//! products with stock, notifications, analytics; newest-first pagination with opaque
//! cursors; malformed cursors refused.

use std::time::Duration;

use crate::common::*;
use domain::{CartCommand, CartStatus, OrderCommand, OrderStatus};
use projections::ProjectionError;
use store::Database;

async fn carts_follow_their_events(db: Database) {
    register(&db, "tea", 450, 10).await;
    register(&db, "mug", 1200, 5).await;
    let cart = create_cart(&db, "alice").await;
    add(&db, cart, "tea", 2, 450).await;
    add(&db, cart, "mug", 1, 1200).await;
    add(&db, cart, "tea", 1, 450).await;
    cart_command(
        &db,
        cart,
        CartCommand::ChangeQuantity {
            sku: sku("mug"),
            quantity: 3,
        },
    )
    .await;
    let projections = inline(&db, false);
    projections.run_until_caught_up().await.expect("caught up");

    let view = projections.read().cart(*cart.as_uuid()).await.expect("query").expect("cart exists");
    assert_eq!(view.customer_id, "alice");
    assert_eq!(view.status, CartStatus::Open);
    assert_eq!(view.version, 5);
    assert_eq!(view.item_count, 6);
    assert_eq!(view.subtotal, 3 * 450 + 3 * 1200);
    let lines: Vec<(&str, u32, i64, i64)> = view
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity, l.unit_price, l.line_total))
        .collect();
    assert_eq!(lines, vec![("tea", 3, 450, 1350), ("mug", 3, 1200, 3600)]);
    assert_eq!(view.lines[0].name, "Product tea");

    cart_command(&db, cart, CartCommand::Remove { sku: sku("tea") }).await;
    let (order_id, position) = place(&db, cart).await;
    projections.run_until_caught_up().await.expect("caught up");
    projections.wait_for("carts", position, WAIT).await.expect("carts reached the order");
    let view = projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap();
    assert_eq!(view.status, CartStatus::CheckedOut);
    assert_eq!(view.order_id, Some(*order_id.as_uuid()));
    let lines: Vec<(&str, i64)> = view.lines.iter().map(|l| (l.sku.as_str(), l.line_total)).collect();
    assert_eq!(lines, vec![("mug", 3600)]);
    assert!(view.updated_at >= view.created_at);

    assert_eq!(projections.read().cart(uuid::Uuid::now_v7()).await.unwrap(), None);
}

/// Lines are written only where they differ from the stored ones; removing a line shifts
/// the later ones up and drops the last row, clearing drops them all.
async fn cart_lines_shift_and_shrink_one_batch_at_a_time(db: Database) {
    for (name, price) in [("tea", 450), ("mug", 1200), ("pot", 3000)] {
        register(&db, name, price, 10).await;
    }
    let cart = create_cart(&db, "alice").await;
    let projections = inline(&db, false);
    let lines = || async {
        let view = projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap();
        view.lines.into_iter().map(|l| (l.sku, l.quantity)).collect::<Vec<_>>()
    };
    let expect = |pairs: &[(&str, u32)]| pairs.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect::<Vec<_>>();
    for (name, price) in [("tea", 450), ("mug", 1200), ("pot", 3000)] {
        add(&db, cart, name, 1, price).await;
        projections.run_until_caught_up().await.unwrap();
    }
    assert_eq!(lines().await, expect(&[("tea", 1), ("mug", 1), ("pot", 1)]));
    add(&db, cart, "mug", 2, 1200).await;
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(lines().await, expect(&[("tea", 1), ("mug", 3), ("pot", 1)]));
    cart_command(&db, cart, CartCommand::Remove { sku: sku("tea") }).await;
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(lines().await, expect(&[("mug", 3), ("pot", 1)]));
    cart_command(&db, cart, CartCommand::Clear).await;
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(lines().await, expect(&[]));
    add(&db, cart, "pot", 2, 3000).await;
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(lines().await, expect(&[("pot", 2)]));
}

async fn carts_page_newest_first(db: Database) {
    let mut carts = Vec::new();
    for _ in 0..5 {
        carts.push(create_cart(&db, "bob").await);
    }
    let other = create_cart(&db, "carol").await;
    register(&db, "tea", 100, 100).await;
    add(&db, carts[1], "tea", 1, 100).await;
    place(&db, carts[1]).await;
    let projections = inline(&db, false);
    projections.run_until_caught_up().await.unwrap();
    let read = projections.read();

    let first = read.carts_of("bob", None, 2, None).await.unwrap();
    assert!(first.has_next_page);
    let ids: Vec<_> = first.items.iter().map(|(_, c)| c.id).collect();
    assert_eq!(ids, vec![*carts[4].as_uuid(), *carts[3].as_uuid()]);
    let second = read.carts_of("bob", None, 2, Some(&first.items[1].0)).await.unwrap();
    let ids: Vec<_> = second.items.iter().map(|(_, c)| c.id).collect();
    assert_eq!(ids, vec![*carts[2].as_uuid(), *carts[1].as_uuid()]);
    assert!(second.has_next_page);
    let third = read.carts_of("bob", None, 2, Some(&second.items[1].0)).await.unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(!third.has_next_page);
    // Lines of every cart of a page come along.
    assert_eq!(second.items[1].1.lines.len(), 1);

    let open = read.carts_of("bob", Some(CartStatus::Open), 10, None).await.unwrap();
    assert_eq!(open.items.len(), 4);
    let checked_out = read.carts_of("bob", Some(CartStatus::CheckedOut), 10, None).await.unwrap();
    assert_eq!(checked_out.items.iter().map(|(_, c)| c.id).collect::<Vec<_>>(), vec![*carts[1].as_uuid()]);
    let carol = read.carts_of("carol", None, 10, None).await.unwrap();
    assert_eq!(carol.items.len(), 1);
    assert_eq!(carol.items[0].1.id, *other.as_uuid());

    for bad in [
        "",
        "not-a-cursor",
        "Y2FydDp4",
        &read
            .orders_of("bob", 1, None)
            .await
            .unwrap()
            .items
            .first()
            .map(|(c, _)| c.clone())
            .unwrap_or("x".into()),
    ] {
        assert!(
            matches!(read.carts_of("bob", None, 2, Some(bad)).await, Err(ProjectionError::BadCursor)),
            "{bad:?}"
        );
    }
    // A cursor of another list is refused too.
    let products = read.products(1, None).await.unwrap();
    assert!(matches!(
        read.carts_of("bob", None, 2, Some(&products.items[0].0)).await,
        Err(ProjectionError::BadCursor)
    ));
}

async fn orders_and_products_follow_their_events(db: Database) {
    register(&db, "tea", 450, 10).await;
    register(&db, "mug", 1200, 5).await;
    let cart = create_cart(&db, "dave").await;
    add(&db, cart, "tea", 4, 450).await;
    add(&db, cart, "mug", 2, 1200).await;
    let (first, _) = place(&db, cart).await;
    let cart2 = create_cart(&db, "dave").await;
    add(&db, cart2, "tea", 1, 450).await;
    let (second, _) = place(&db, cart2).await;
    order_command(&db, first, OrderCommand::StartPreparation).await;
    order_command(&db, first, OrderCommand::Ship).await;
    order_command(
        &db,
        second,
        OrderCommand::Cancel {
            reason: Some("changed my mind".into()),
        },
    )
    .await;
    receive(&db, "mug", 10).await;
    // No reactors: stock stays reserved until the inventory reactor acts (tested elsewhere).
    let projections = inline(&db, false);
    projections.run_until_caught_up().await.unwrap();
    let read = projections.read();

    let order = read.order(*first.as_uuid()).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Shipped);
    assert_eq!(order.customer_id, "dave");
    assert_eq!(order.cart_id, *cart.as_uuid());
    assert_eq!(order.total, 4 * 450 + 2 * 1200);
    assert_eq!(order.version, 3);
    assert_eq!(
        order.lines.iter().map(|l| (l.sku.as_str(), l.quantity, l.line_total)).collect::<Vec<_>>(),
        vec![("tea", 4, 1800), ("mug", 2, 2400)]
    );
    let cancelled = read.order(*second.as_uuid()).await.unwrap().unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("changed my mind"));

    let page = read.orders_of("dave", 1, None).await.unwrap();
    assert!(page.has_next_page);
    assert_eq!(page.items[0].1.id, *second.as_uuid());
    let page = read.orders_of("dave", 1, Some(&page.items[0].0)).await.unwrap();
    assert_eq!(page.items[0].1.id, *first.as_uuid());
    assert!(!page.has_next_page);
    assert_eq!(page.items[0].1.lines.len(), 2);

    let tea = read.product("tea").await.unwrap().unwrap();
    assert_eq!((tea.on_hand, tea.reserved, tea.available, tea.price, tea.version), (10, 5, 5, 450, 4));
    let mug = read.product("mug").await.unwrap().unwrap();
    assert_eq!((mug.on_hand, mug.reserved, mug.available), (15, 2, 13));
    assert_eq!(read.product("nope").await.unwrap(), None);
    let page = read.products(1, None).await.unwrap();
    assert_eq!(page.items[0].1.sku, "mug");
    assert!(page.has_next_page);
    let page = read.products(5, Some(&page.items[0].0)).await.unwrap();
    assert_eq!(page.items.iter().map(|(_, p)| p.sku.as_str()).collect::<Vec<_>>(), vec!["tea"]);
    assert!(!page.has_next_page);
}

async fn notifications_and_analytics(db: Database) {
    register(&db, "tea", 450, 10).await;
    let cart = create_cart(&db, "erin").await;
    add(&db, cart, "tea", 2, 450).await;
    add(&db, cart, "tea", 1, 450).await;
    let (order, _) = place(&db, cart).await;
    order_command(&db, order, OrderCommand::Cancel { reason: None }).await;
    let _abandoned = {
        let c = create_cart(&db, "erin").await;
        add(&db, c, "tea", 1, 450).await;
        c
    };
    let projections = inline(&db, false);
    projections.run_until_caught_up().await.unwrap();
    let read = projections.read();

    let page = read.notifications_of("erin", 10, None).await.unwrap();
    let kinds: Vec<&str> = page.items.iter().map(|(_, n)| n.kind.as_str()).collect();
    assert_eq!(kinds, vec!["ORDER_CANCELLED", "ORDER_PLACED"]);
    assert!(page
        .items
        .iter()
        .all(|(_, n)| n.order_id == Some(*order.as_uuid()) && n.customer_id == "erin"));
    assert!(page.items[1].1.message.contains("13.50"), "{}", page.items[1].1.message);
    let next = read.notifications_of("erin", 1, Some(&page.items[0].0)).await.unwrap();
    assert_eq!(next.items[0].1.kind, "ORDER_PLACED");
    assert!(read.notifications_of("nobody", 10, None).await.unwrap().items.is_empty());

    let analytics = read.analytics(10, 7, Duration::from_secs(3600)).await.unwrap();
    let tea = &analytics.skus[0];
    assert_eq!(
        (tea.sku.as_str(), tea.add_events, tea.units_added, tea.units_ordered, tea.revenue_ordered),
        ("tea", 3, 4, 3, 1350)
    );
    let today = &analytics.days[0];
    assert_eq!(
        (today.carts_created, today.carts_checked_out, today.orders_placed, today.orders_cancelled),
        (2, 1, 1, 1)
    );
    assert_eq!(analytics.open_carts, 1);
    assert_eq!(analytics.abandoned_carts, 0, "nothing is an hour old yet");
    let now = read.analytics(10, 7, Duration::ZERO).await.unwrap();
    assert_eq!(now.abandoned_carts, 1);
}

backends!(
    carts_follow_their_events,
    cart_lines_shift_and_shrink_one_batch_at_a_time,
    carts_page_newest_first,
    orders_and_products_follow_their_events,
    notifications_and_analytics
);
