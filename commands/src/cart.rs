//! Cart commands: a cart is its owner's alone, checked on the state the command loads
//! (no separate read); anyone else's cart, like a missing one, is [`CommandError::NotFound`].

use domain::{CartCommand, CartEvent, CartId, CartState, Sku};

use crate::aggregate::{CartAggregate, ProductAggregate};
use crate::{CommandContext, CommandError, Commands, Executed};

/// The cart if `actor` owns it.
pub(crate) fn owned<'a>(state: &'a CartState, actor: &str) -> Result<&'a domain::Cart, CommandError> {
    match state {
        Some(cart) if cart.customer_id.as_str() == actor => Ok(cart),
        _ => Err(CommandError::NotFound("cart".to_owned())),
    }
}

/// The domain's decision, for the cart's owner only (creating needs no owner yet).
fn decide_for_owner(state: &CartState, actor: &str, command: CartCommand) -> Result<Vec<CartEvent>, CommandError> {
    if !matches!(command, CartCommand::Create { .. }) {
        owned(state, actor)?;
    }
    Ok(domain::cart::decide(state, command)?)
}

impl Commands {
    /// A cart command by the cart's owner (`ctx.actor`).
    pub async fn cart(
        &self,
        ctx: &CommandContext,
        cart_id: CartId,
        expected: Option<u64>,
        command: CartCommand,
    ) -> Result<Executed<CartState>, CommandError> {
        let actor = ctx.actor.clone();
        self.execute::<CartAggregate, _, _>(ctx, &cart_id.stream_id(), expected, move |state| {
            decide_for_owner(state, &actor, command.clone())
        })
        .await
    }

    /// Adds an item at the product's current name and price (the catalog's, never the
    /// client's): the product stream's tail is the command's one read; the cart itself
    /// is not read when its state is cached.
    pub async fn add_item(
        &self,
        ctx: &CommandContext,
        cart_id: CartId,
        sku: Sku,
        quantity: i64,
        expected: Option<u64>,
    ) -> Result<Executed<CartState>, CommandError> {
        let product = self
            .current::<ProductAggregate>(&sku.stream_id())
            .await?
            .state
            .ok_or_else(|| CommandError::NotFound(format!("product {sku}")))?;
        let command = CartCommand::AddItem {
            sku,
            quantity,
            name: product.name,
            unit_price: product.price,
        };
        self.cart(ctx, cart_id, expected, command).await
    }
}
