//! The stored form of an entity: the serde form of [`Entity`] (short keys, expanded names) as
//! JSON bytes. JSON keeps the file inspectable with the `sqlite3` shell.

use hanbat_model::{Entity, NgsiError, Result};

pub fn encode(entity: &Entity) -> Result<Vec<u8>> {
    serde_json::to_vec(entity).map_err(|e| NgsiError::internal(format!("encoding entity '{}': {e}", entity.id)))
}

pub fn decode(bytes: &[u8]) -> Result<Entity> {
    serde_json::from_slice(bytes).map_err(|e| NgsiError::internal(format!("stored entity is unreadable: {e}")))
}
