//! Decoding an event from its two stored parts, the type name and the data, as if they were
//! the adjacently tagged object `{"type": <name>, "data": <data>}` that serde derives for the
//! event enums, without writing that object out: serde reads the tag, then the data straight
//! from the given deserializer (the stored JSON text, or a `Value`).

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess};

/// Decodes `T` from the tag `type_name` and the data `data` reads.
pub(super) fn decode_tagged<'de, T, D>(type_name: &'static str, data: D) -> Result<T, serde_json::Error>
where
    T: DeserializeOwned,
    D: Deserializer<'de, Error = serde_json::Error>,
{
    T::deserialize(MapAccessDeserializer::new(Tagged {
        type_name,
        data: Some(data),
        next: Entry::Type,
    }))
}

/// The two entries of the tagged object, `type` first so serde picks the variant before it
/// reads the data (with `data` first it would buffer the data to read it later).
struct Tagged<D> {
    type_name: &'static str,
    data: Option<D>,
    next: Entry,
}

#[derive(Clone, Copy)]
enum Entry {
    Type,
    Data,
    End,
}

impl<'de, D: Deserializer<'de, Error = serde_json::Error>> MapAccess<'de> for Tagged<D> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            Entry::Type => "type",
            Entry::Data => "data",
            Entry::End => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        match (self.next, self.data.take()) {
            (Entry::Type, data) => {
                self.data = data;
                self.next = Entry::Data;
                seed.deserialize(BorrowedStrDeserializer::new(self.type_name))
            }
            (Entry::Data, Some(data)) => {
                self.next = Entry::End;
                seed.deserialize(data)
            }
            _ => Err(de::Error::custom("an event has only a type and data")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(match self.next {
            Entry::Type => 2,
            Entry::Data => 1,
            Entry::End => 0,
        })
    }
}
