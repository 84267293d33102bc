//! Test helpers: `given(events).when(command).then(events)`.
//!
//! Test-only, so the production code keeps plain functions per aggregate
//! instead of a generic aggregate trait.

use std::fmt::Debug;

use crate::error::DomainError;
use crate::event::Event;

/// Ties an event type to its aggregate's state, command and functions, so
/// that `given(vec![some_cart_event])` infers the aggregate.
pub(crate) trait Decider: Event {
    type State: Default + Clone + Debug + PartialEq;
    type Command;
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self>, DomainError>;
    fn evolve(state: Self::State, event: &Self) -> Self::State;
}

pub(crate) struct Given<E: Decider> {
    state: E::State,
}

pub(crate) struct Then<E: Decider> {
    before: E::State,
    outcome: Result<Vec<E>, DomainError>,
}

/// The state after these events.
pub(crate) fn given<E: Decider>(events: impl IntoIterator<Item = E>) -> Given<E> {
    let state = events.into_iter().fold(E::State::default(), |s, e| E::evolve(s, &e));
    Given { state }
}

impl<E: Decider> Given<E> {
    pub(crate) fn when(self, command: E::Command) -> Then<E> {
        let outcome = E::decide(&self.state, command);
        Then { before: self.state, outcome }
    }
}

impl<E: Decider> Then<E> {
    /// The command is accepted and appends exactly these events, which also
    /// survive encoding.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = E>) -> E::State {
        let expected: Vec<E> = expected.into_iter().collect();
        assert_eq!(self.outcome, Ok(expected.clone()));
        for event in &expected {
            let decoded = E::from_data(event.event_type(), event.to_data()).unwrap();
            assert_eq!(&decoded, event);
        }
        expected.iter().fold(self.before, E::evolve)
    }

    /// The command is accepted and appends nothing.
    #[track_caller]
    pub(crate) fn then_nothing(self) {
        assert_eq!(self.outcome, Ok(vec![]));
    }

    /// The command is rejected with this error.
    #[track_caller]
    pub(crate) fn then_error(self, expected: DomainError) {
        assert_eq!(self.outcome, Err(expected));
    }

    /// The command is rejected with this contract code (for messages not
    /// worth pinning word for word).
    #[track_caller]
    pub(crate) fn then_code(self, code: &str) {
        match self.outcome {
            Err(e) => assert_eq!(e.code(), code, "{e}"),
            Ok(events) => panic!("expected {code}, got events {events:?}"),
        }
    }
}

impl Decider for crate::cart::CartEvent {
    type State = crate::cart::CartState;
    type Command = crate::cart::CartCommand;
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self>, DomainError> {
        crate::cart::decide(state, command)
    }
    fn evolve(state: Self::State, event: &Self) -> Self::State {
        crate::cart::evolve(state, event)
    }
}

impl Decider for crate::product::ProductEvent {
    type State = crate::product::ProductState;
    type Command = crate::product::ProductCommand;
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self>, DomainError> {
        crate::product::decide(state, command)
    }
    fn evolve(state: Self::State, event: &Self) -> Self::State {
        crate::product::evolve(state, event)
    }
}

impl Decider for crate::order::OrderEvent {
    type State = crate::order::OrderState;
    type Command = crate::order::OrderCommand;
    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self>, DomainError> {
        crate::order::decide(state, command)
    }
    fn evolve(state: Self::State, event: &Self) -> Self::State {
        crate::order::evolve(state, event)
    }
}

/// A sku from a literal known to be valid.
pub(crate) fn sku(s: &str) -> crate::ids::Sku {
    crate::ids::Sku::parse(s).expect("test sku is valid")
}

pub(crate) fn customer(s: &str) -> crate::ids::CustomerId {
    crate::ids::CustomerId::parse(s).expect("test customer id is valid")
}

pub(crate) fn cents(minor: i64) -> crate::money::Money {
    crate::money::Money::from_minor(minor)
}

/// Deterministic ids, distinct per `n`.
pub(crate) fn cart_id(n: u128) -> crate::ids::CartId {
    crate::ids::CartId::from_uuid(uuid::Uuid::from_u128(0xca00_0000_0000_4000_8000_0000_0000_0000 | n))
}

pub(crate) fn order_id(n: u128) -> crate::ids::OrderId {
    crate::ids::OrderId::from_uuid(uuid::Uuid::from_u128(0x0d00_0000_0000_4000_8000_0000_0000_0000 | n))
}
