//! The checkpoint rows (`projection_checkpoints`): position, state, error, generations and
//! the leader's fencing token. Every write that moves a position is fenced by the writer's
//! `leader_epoch` (and, for a projection, by the position and generation it started from),
//! so a deposed leader moves nothing: its UPDATE matches no row and it learns it was deposed.

use serde::Deserialize;
use store::{Database, Position};
use time::OffsetDateTime;

use crate::db::{format_time, pos, position, ts, Arg, Conn, ReadConn, Sql};
use crate::error::ProjectionError;

/// A consumer's row as stored.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Checkpoint {
    pub name: String,
    pub position: i64,
    pub state: String,
    pub last_error: Option<String>,
    pub error_position: Option<i64>,
    pub generation: i64,
    pub rebuild_generation: Option<i64>,
    pub rebuild_position: Option<i64>,
    pub leader: Option<String>,
    pub leader_epoch: i64,
    #[serde(with = "ts")]
    pub updated_at: OffsetDateTime,
}

impl Checkpoint {
    pub fn position(&self) -> Position {
        position(self.position)
    }

    pub fn failed(&self) -> bool {
        self.state == "FAILED"
    }
}

macro_rules! checkpoint_json_pg {
    () => {
        "json_build_object('name', name, 'position', position, 'state', state, 'last_error', last_error, \
         'error_position', error_position, 'generation', generation, 'rebuild_generation', rebuild_generation, \
         'rebuild_position', rebuild_position, 'leader', leader, 'leader_epoch', leader_epoch, 'updated_at', updated_at)::text"
    };
}
macro_rules! checkpoint_json_lite {
    () => {
        "json_object('name', name, 'position', position, 'state', state, 'last_error', last_error, \
         'error_position', error_position, 'generation', generation, 'rebuild_generation', rebuild_generation, \
         'rebuild_position', rebuild_position, 'leader', leader, 'leader_epoch', leader_epoch, 'updated_at', updated_at)"
    };
}

const LOAD: Sql = Sql {
    pg: concat!("select ", checkpoint_json_pg!(), " from projection_checkpoints where name = $1"),
    lite: concat!("select ", checkpoint_json_lite!(), " from projection_checkpoints where name = $1"),
};

const LOAD_ALL: Sql = Sql {
    pg: concat!("select ", checkpoint_json_pg!(), " from projection_checkpoints order by name"),
    lite: concat!("select ", checkpoint_json_lite!(), " from projection_checkpoints order by name"),
};

const ENSURE: Sql = Sql {
    pg: "insert into projection_checkpoints (name) values ($1) on conflict (name) do nothing",
    lite: "insert into projection_checkpoints (name) values ($1) on conflict (name) do nothing",
};

/// Becoming leader: a new fencing token, which every earlier leader's writes now miss.
const CLAIM: Sql = Sql {
    pg: "update projection_checkpoints
            set leader_epoch = leader_epoch + 1, leader = $2,
                state = case when state in ('FAILED', 'REBUILDING') then state else 'CATCHING_UP' end, updated_at = $3::timestamptz
          where name = $1 returning leader_epoch",
    lite: "update projection_checkpoints
            set leader_epoch = leader_epoch + 1, leader = $2,
                state = case when state in ('FAILED', 'REBUILDING') then state else 'CATCHING_UP' end, updated_at = $3
          where name = $1 returning leader_epoch",
};

/// Moves a position: only from where the leader read it, in the generation it read, while it
/// still holds the token.
const ADVANCE: Sql = Sql {
    pg: "update projection_checkpoints set position = $5, state = $6, updated_at = $7::timestamptz
          where name = $1 and leader_epoch = $2 and generation = $3 and position = $4 and state <> 'FAILED'",
    lite: "update projection_checkpoints set position = $5, state = $6, updated_at = $7
          where name = $1 and leader_epoch = $2 and generation = $3 and position = $4 and state <> 'FAILED'",
};

const ADVANCE_REBUILD: Sql = Sql {
    pg: "update projection_checkpoints set rebuild_position = $5, updated_at = $6::timestamptz
          where name = $1 and leader_epoch = $2 and rebuild_generation = $3 and rebuild_position = $4",
    lite: "update projection_checkpoints set rebuild_position = $5, updated_at = $6
          where name = $1 and leader_epoch = $2 and rebuild_generation = $3 and rebuild_position = $4",
};

/// The rebuilt generation becomes the one readers see, with its position, in one statement.
const SWAP: Sql = Sql {
    pg: "update projection_checkpoints
            set generation = rebuild_generation, position = rebuild_position, rebuild_generation = null, rebuild_position = null,
                state = 'RUNNING', updated_at = $4::timestamptz
          where name = $1 and leader_epoch = $2 and rebuild_generation = $3 and rebuild_position >= position",
    lite: "update projection_checkpoints
            set generation = rebuild_generation, position = rebuild_position, rebuild_generation = null, rebuild_position = null,
                state = 'RUNNING', updated_at = $4
          where name = $1 and leader_epoch = $2 and rebuild_generation = $3 and rebuild_position >= position",
};

const FAIL: Sql = Sql {
    pg: "update projection_checkpoints set state = 'FAILED', last_error = $3, error_position = $4, updated_at = $5::timestamptz
          where name = $1 and leader_epoch = $2",
    lite: "update projection_checkpoints set state = 'FAILED', last_error = $3, error_position = $4, updated_at = $5
          where name = $1 and leader_epoch = $2",
};

const SET_STATE: Sql = Sql {
    pg: "update projection_checkpoints set state = $3, updated_at = $4::timestamptz where name = $1 and leader_epoch = $2 and state <> 'FAILED'",
    lite: "update projection_checkpoints set state = $3, updated_at = $4 where name = $1 and leader_epoch = $2 and state <> 'FAILED'",
};

const RESUME: Sql = Sql {
    pg: "update projection_checkpoints
            set state = case when rebuild_generation is null then 'CATCHING_UP' else 'REBUILDING' end,
                last_error = null, error_position = null, updated_at = $2::timestamptz
          where name = $1 and state = 'FAILED'",
    lite: "update projection_checkpoints
            set state = case when rebuild_generation is null then 'CATCHING_UP' else 'REBUILDING' end,
                last_error = null, error_position = null, updated_at = $2
          where name = $1 and state = 'FAILED'",
};

/// Asks for a rebuild (whoever leads picks it up); a rebuild already under way is kept.
const REQUEST_REBUILD: Sql = Sql {
    pg: "update projection_checkpoints
            set rebuild_generation = generation + 1, rebuild_position = 0,
                state = case when state = 'FAILED' then state else 'REBUILDING' end, updated_at = $2::timestamptz
          where name = $1 and rebuild_generation is null",
    lite: "update projection_checkpoints
            set rebuild_generation = generation + 1, rebuild_position = 0,
                state = case when state = 'FAILED' then state else 'REBUILDING' end, updated_at = $2
          where name = $1 and rebuild_generation is null",
};

fn now() -> Arg {
    Arg::Text(format_time(OffsetDateTime::now_utc()))
}

pub(crate) async fn ensure(db: &Database, names: &[String]) -> Result<(), ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    for name in names {
        tx.conn().execute(ENSURE, &[Arg::Text(name.clone())]).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn load(conn: &mut Conn<'_>, name: &str) -> Result<Checkpoint, ProjectionError> {
    let rows: Vec<Checkpoint> = conn.json_rows(LOAD, &[Arg::Text(name.to_owned())]).await?;
    rows.into_iter().next().ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
}

/// The row as any reader sees it (SQLite: from the read-only pool).
pub(crate) async fn read(db: &Database, name: &str) -> Result<Checkpoint, ProjectionError> {
    let mut conn = ReadConn::acquire(db).await?;
    load(&mut conn.conn(), name).await
}

pub(crate) async fn read_all(db: &Database) -> Result<Vec<Checkpoint>, ProjectionError> {
    let mut conn = ReadConn::acquire(db).await?;
    load_all(&mut conn.conn()).await
}

pub(crate) async fn load_all(conn: &mut Conn<'_>) -> Result<Vec<Checkpoint>, ProjectionError> {
    conn.json_rows(LOAD_ALL, &[]).await
}

/// Takes a new fencing token for `worker`; returns it. SQLite's local lease (on Postgres,
/// taking the lease bumps the token in the same statement, see `leader`).
pub(crate) async fn claim(db: &Database, name: &str, worker: &str) -> Result<i64, ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    let epoch = tx
        .conn()
        .optional_int(CLAIM, &[Arg::Text(name.to_owned()), Arg::Text(worker.to_owned()), now()])
        .await?;
    tx.commit().await?;
    epoch.ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
}

/// The fenced move of a live position, inside the caller's transaction. `Deposed` when it
/// matched no row: another leader took over, or the row moved under us.
pub(crate) async fn advance(
    conn: &mut Conn<'_>,
    name: &str,
    epoch: i64,
    generation: i64,
    from: Position,
    to: Position,
    state: &str,
) -> Result<(), ProjectionError> {
    let args = [
        Arg::Text(name.to_owned()),
        Arg::Int(epoch),
        Arg::Int(generation),
        Arg::Int(pos(from)),
        Arg::Int(pos(to)),
        Arg::Text(state.to_owned()),
        now(),
    ];
    match conn.execute(ADVANCE, &args).await? {
        1 => Ok(()),
        _ => Err(ProjectionError::Deposed(name.to_owned())),
    }
}

/// The fenced move of a rebuild's position, inside the caller's transaction.
pub(crate) async fn advance_rebuild(
    conn: &mut Conn<'_>,
    name: &str,
    epoch: i64,
    generation: i64,
    from: Position,
    to: Position,
) -> Result<(), ProjectionError> {
    let args = [
        Arg::Text(name.to_owned()),
        Arg::Int(epoch),
        Arg::Int(generation),
        Arg::Int(pos(from)),
        Arg::Int(pos(to)),
        now(),
    ];
    match conn.execute(ADVANCE_REBUILD, &args).await? {
        1 => Ok(()),
        _ => Err(ProjectionError::Deposed(name.to_owned())),
    }
}

/// Makes the rebuilt generation current; false when the rebuild is still behind the live
/// position (it is not swapped in then).
pub(crate) async fn swap(conn: &mut Conn<'_>, name: &str, epoch: i64, rebuild_generation: i64) -> Result<bool, ProjectionError> {
    Ok(conn
        .execute(SWAP, &[Arg::Text(name.to_owned()), Arg::Int(epoch), Arg::Int(rebuild_generation), now()])
        .await?
        == 1)
}

pub(crate) async fn fail(db: &Database, name: &str, epoch: i64, error: &str, at: Option<Position>) -> Result<(), ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    let args = [
        Arg::Text(name.to_owned()),
        Arg::Int(epoch),
        Arg::Text(error.to_owned()),
        Arg::OptInt(at.map(pos)),
        now(),
    ];
    let updated = tx.conn().execute(FAIL, &args).await?;
    tx.commit().await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(ProjectionError::Deposed(name.to_owned()))
    }
}

pub(crate) async fn set_state(db: &Database, name: &str, epoch: i64, state: &str) -> Result<(), ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    tx.conn()
        .execute(
            SET_STATE,
            &[Arg::Text(name.to_owned()), Arg::Int(epoch), Arg::Text(state.to_owned()), now()],
        )
        .await?;
    tx.commit().await?;
    Ok(())
}

/// FAILED -> running again; false when it was not FAILED.
pub(crate) async fn resume(db: &Database, name: &str) -> Result<bool, ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    let updated = tx.conn().execute(RESUME, &[Arg::Text(name.to_owned()), now()]).await?;
    tx.commit().await?;
    Ok(updated == 1)
}

pub(crate) async fn request_rebuild(db: &Database, name: &str) -> Result<(), ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    tx.conn().execute(REQUEST_REBUILD, &[Arg::Text(name.to_owned()), now()]).await?;
    tx.commit().await?;
    Ok(())
}

/// The fencing token a consumer's leader holds now (operators, tests).
pub async fn epoch(db: &Database, name: &str) -> Result<i64, ProjectionError> {
    Ok(read(db, name).await?.leader_epoch)
}

/// Moves a live checkpoint from `from` to `to` in a transaction of its own, fenced exactly as
/// a worker's write is: refused with [`ProjectionError::Deposed`] unless `epoch` is the
/// current token and the checkpoint is at `from`. For tools and for the fencing tests.
pub async fn try_advance(db: &Database, name: &str, epoch: i64, from: Position, to: Position) -> Result<(), ProjectionError> {
    let mut tx = crate::db::Tx::begin(db).await?;
    let current = load(&mut tx.conn(), name).await?;
    advance(&mut tx.conn(), name, epoch, current.generation, from, to, &current.state).await?;
    tx.commit().await?;
    Ok(())
}
