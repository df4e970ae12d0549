//! The operations a registration may support (§4.20, tables 4.20-1 and 4.20-2): each HTTP
//! operation of the entity API has a name, and registrations list names or groups of names.

use hanbat_csource::Registration;

/// An entity operation that may be distributed to context sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /entities`
    CreateEntity,
    /// `PATCH /entities/{id}/attrs`
    UpdateEntity,
    /// `POST /entities/{id}/attrs`
    AppendAttrs,
    /// `PATCH /entities/{id}/attrs/{attrId}`
    UpdateAttrs,
    /// `DELETE /entities/{id}/attrs/{attrId}`
    DeleteAttrs,
    /// `PUT /entities/{id}/attrs/{attrId}`
    ReplaceAttrs,
    /// `DELETE /entities/{id}`
    DeleteEntity,
    /// `PATCH /entities/{id}`
    MergeEntity,
    /// `PUT /entities/{id}`
    ReplaceEntity,
    /// `DELETE /entities`
    PurgeEntity,
    /// `GET /entities/{id}`
    RetrieveEntity,
    /// `GET /entities`
    QueryEntity,
    /// `POST /entityOperations/query`
    QueryBatch,
    CreateBatch,
    UpsertBatch,
    UpdateBatch,
    DeleteBatch,
    MergeBatch,
}

use Operation::*;

/// `retrieveOps` (table 4.20-2).
const RETRIEVE_OPS: &[Operation] = &[RetrieveEntity, QueryEntity];
/// `updateOps`.
const UPDATE_OPS: &[Operation] = &[UpdateEntity, UpdateAttrs, ReplaceEntity, ReplaceAttrs];
/// `federationOps`, the default of a registration that lists no operations (§5.2.9): the
/// entity reads of a broker that federates others.
const FEDERATION_OPS: &[Operation] = &[RetrieveEntity, QueryEntity, QueryBatch];
/// `redirectionOps`: every single-entity operation and the purge, no batch operation.
const REDIRECTION_OPS: &[Operation] = &[
    CreateEntity,
    UpdateEntity,
    AppendAttrs,
    UpdateAttrs,
    DeleteAttrs,
    DeleteEntity,
    MergeEntity,
    ReplaceEntity,
    ReplaceAttrs,
    RetrieveEntity,
    QueryEntity,
    PurgeEntity,
];

impl Operation {
    /// The name a registration's `operations` lists.
    pub fn name(self) -> &'static str {
        match self {
            CreateEntity => "createEntity",
            UpdateEntity => "updateEntity",
            AppendAttrs => "appendAttrs",
            UpdateAttrs => "updateAttrs",
            DeleteAttrs => "deleteAttrs",
            ReplaceAttrs => "replaceAttrs",
            DeleteEntity => "deleteEntity",
            MergeEntity => "mergeEntity",
            ReplaceEntity => "replaceEntity",
            PurgeEntity => "purgeEntity",
            RetrieveEntity => "retrieveEntity",
            QueryEntity => "queryEntity",
            QueryBatch => "queryBatch",
            CreateBatch => "createBatch",
            UpsertBatch => "upsertBatch",
            UpdateBatch => "updateBatch",
            DeleteBatch => "deleteBatch",
            MergeBatch => "mergeBatch",
        }
    }

    /// Whether the operation only reads: auxiliary registrations serve reads only (§4.3.6.2).
    pub fn is_read(self) -> bool {
        matches!(self, RetrieveEntity | QueryEntity | QueryBatch)
    }

    /// Whether `reg` can serve the operation: a read is served by any of the reads that find
    /// the same entities (an entity by id is also found by a query on its id).
    pub fn served_by(self, reg: &Registration) -> bool {
        match self {
            RetrieveEntity => [RetrieveEntity, QueryEntity, QueryBatch].iter().any(|op| op.supported_by(reg)),
            QueryEntity | QueryBatch => [QueryEntity, QueryBatch].iter().any(|op| op.supported_by(reg)),
            _ => self.supported_by(reg),
        }
    }

    /// Whether `reg` supports the operation, by name or through one of its groups.
    pub fn supported_by(self, reg: &Registration) -> bool {
        reg.operations().any(|name| {
            name == self.name()
                || match name {
                    "retrieveOps" => RETRIEVE_OPS.contains(&self),
                    "updateOps" => UPDATE_OPS.contains(&self),
                    "federationOps" => FEDERATION_OPS.contains(&self),
                    "redirectionOps" => REDIRECTION_OPS.contains(&self),
                    _ => false,
                }
        })
    }
}
