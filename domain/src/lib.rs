//! The pure decisions of cartsource: carts, products (catalog and stock) and
//! orders as plain data and plain functions, and the customer stream that
//! records erasures of personal data ([`personal`] says how it is protected).
//!
//! Each aggregate is a module with a state (`Option<_>`, `None` while its
//! stream has no events), its commands and events, and two functions:
//! `decide(&state, command) -> Result<Vec<Event>, DomainError>` says what a
//! command appends, or why it is rejected, and `evolve(state, &event) -> state`
//! applies one event. Placing an order spans the three aggregates and is one
//! decision of its own ([`place_order`]).
//!
//! This crate does no IO, no async, and reads no clock or randomness: whatever
//! a decision needs (the cart, the products, a fresh order id) is loaded or
//! made by the caller first, so every rule is testable with plain values. The
//! `store` crate persists the events this crate defines ([`event`] says how
//! they are encoded), `projections` build read models and react by folding
//! them, and `api` turns GraphQL mutations into these commands and
//! [`DomainError`] into the contract's error codes.

pub mod cart;
pub mod customer;
pub mod error;
pub mod event;
pub mod ids;
pub mod line;
pub mod money;
pub mod order;
pub mod personal;
pub mod place_order;
pub mod product;

#[cfg(test)]
mod testing;

pub use cart::{Cart, CartCommand, CartEvent, CartState, CartStatus};
pub use customer::{Customer, CustomerCommand, CustomerEvent, CustomerState};
pub use error::DomainError;
pub use event::{AnyEvent, DecodeError, Event, EventType};
pub use ids::{CartId, CustomerId, OrderId, Sku, StreamId};
pub use line::Line;
pub use money::{Money, CURRENCY_CODE};
pub use order::{Order, OrderAction, OrderCommand, OrderEvent, OrderState, OrderStatus};
pub use personal::{Address, PersonalData, SealedPersonalData};
pub use place_order::{decide_inventory_commands, decide_place_order, PlaceOrderEvents};
pub use product::{Product, ProductCommand, ProductEvent, ProductState};
