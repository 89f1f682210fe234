//! The master registry as a run reads it, snapshot partitions, and the diff of one
//! snapshot against the last.

use dtks_platform::copy::copy_out;
use dtks_platform::fault::Fault;
use dtks_proto::determination::v1::*;
use tonic::Status;

use crate::error::{Error, Result};

/// The partition that holds one snapshot's rows.
pub(crate) fn partition(snapshot_id: uuid::Uuid) -> String {
    format!("snapshot_rows_{}", snapshot_id.simple())
}

/// One current household of the master registry, as a run reads it.
pub(crate) struct Current {
    pub(crate) id: u128,
    pub(crate) version: i64,
    /// Index into [`Registry::regions`].
    pub(crate) region: u32,
    pub(crate) digest: [u8; 32],
    /// Where its model inputs lie in [`Registry::inputs`].
    pub(crate) inputs: (usize, u32),
}

/// The master registry as a run reads it: the current households, their regions named
/// once, and the model's inputs side by side in one buffer.
pub(crate) struct Registry {
    pub(crate) rows: Vec<Current>,
    /// Indices into `rows`, in household id order.
    pub(crate) by_id: Vec<u32>,
    pub(crate) inputs: Vec<u8>,
    pub(crate) regions: Vec<String>,
    /// Per region: its province's group number, and its regency's index in `regencies`.
    pub(crate) province_of: Vec<u32>,
    pub(crate) regency_of: Vec<u32>,
    pub(crate) regencies: Vec<String>,
    pub(crate) persons: i64,
}

/// Names each distinct string once, by number.
#[derive(Default)]
pub(crate) struct Names {
    pub(crate) index: std::collections::HashMap<String, u32>,
    pub(crate) names: Vec<String>,
}

impl Names {
    pub(crate) fn of(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.to_owned(), i);
        self.names.push(name.to_owned());
        i
    }
}

impl Registry {
    pub(crate) async fn read(conn: &mut sqlx::PgConnection) -> Result<Self> {
        let (mut rows, mut inputs, mut regions, mut persons) =
            (Vec::new(), Vec::new(), Names::default(), 0i64);
        copy_out(
            conn,
            "SELECT household_id, region_code, persons, change_seq, digest, inputs FROM registry_households WHERE removed_at IS NULL",
            |f| {
                let stored = f.bytes(5).unwrap_or_default();
                let digest = f
                    .bytes(4)
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .unwrap_or_default();
                rows.push(Current {
                    id: f.uuid(0)?.as_u128(),
                    region: regions.of(f.text(1)?),
                    version: f.i64(3)?,
                    digest,
                    inputs: (inputs.len(), stored.len() as u32),
                });
                persons += i64::from(f.i32(2)?);
                inputs.extend_from_slice(stored);
                Ok(())
            },
        )
        .await?;
        let mut keys: Vec<(u128, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i as u32))
            .collect();
        keys.sort_unstable();
        let by_id = keys.into_iter().map(|(_, i)| i).collect();
        let (mut provinces, mut regencies) = (Names::default(), Names::default());
        let (province_of, regency_of) = regions
            .names
            .iter()
            .map(|r| {
                (
                    provinces.of(r.get(..2).unwrap_or_default()),
                    regencies.of(r.get(..5).unwrap_or(r)),
                )
            })
            .unzip();
        Ok(Self {
            rows,
            by_id,
            inputs,
            regions: regions.names,
            province_of,
            regency_of,
            regencies: regencies.names,
            persons,
        })
    }

    /// Every household's score, in household id order, on two threads.
    pub(crate) fn scores(
        &self,
        model: &dtks_domain::pmt::Model,
        on: chrono::NaiveDate,
    ) -> Result<Vec<f64>> {
        let score = |chunk: &[u32]| -> Result<Vec<f64>> {
            chunk
                .iter()
                .map(|&i| {
                    let row = &self.rows[i as usize];
                    let (start, len) = row.inputs;
                    dtks_domain::pmt::Inputs::decode(&self.inputs[start..start + len as usize])
                        .map(|inputs| model.score_inputs(&inputs, on))
                        .map_err(|e| {
                            Error::Refused(Status::internal(format!(
                                "registry household {} cannot be scored ({e}); correct its record",
                                uuid::Uuid::from_u128(row.id)
                            )))
                        })
                })
                .collect()
        };
        let half = self.by_id.len().div_ceil(2);
        let (first, second) = self.by_id.split_at(half);
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| score(second));
            (score(first), other.join())
        });
        let mut scores = a?;
        scores.extend(b.map_err(|_| Fault::Other("scoring thread panicked".into()))??);
        Ok(scores)
    }
}

/// A household in a stored snapshot, as a diff reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) id: u128,
    pub(crate) version: i64,
    pub(crate) decile: u8,
}

/// A snapshot's households in id order.
pub(crate) async fn entries(
    conn: &mut sqlx::PgConnection,
    snapshot_id: uuid::Uuid,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    copy_out(
        conn,
        &format!("SELECT household_id, version, decile FROM snapshot_rows WHERE snapshot_id = '{snapshot_id}'"),
        |f| {
            out.push(Entry {
                id: f.uuid(0)?.as_u128(),
                version: f.i64(1)?,
                decile: u8::try_from(f.i16(2)?).unwrap_or_default(),
            });
            Ok(())
        },
    )
    .await?;
    out.sort_unstable_by_key(|e| e.id);
    Ok(out)
}

/// One household a diff names: as it stood in each month (`None` where it is not in
/// that month), and whether its record changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named {
    pub(crate) before: Option<Entry>,
    pub(crate) after: Option<Entry>,
    pub(crate) changed: bool,
}

/// Households added, removed, changed (their record differs) and moved to another
/// decile between two snapshots' households, both in id order. A household whose
/// version differs counts as changed only when the records' digests differ too.
pub(crate) async fn diff(
    conn: &mut sqlx::PgConnection,
    before: &[Entry],
    after: &[Entry],
) -> Result<SnapshotDiff> {
    compare(conn, before, after, None).await
}

/// [`diff`], naming into `named` (when given) every household it counts, in id order.
pub(crate) async fn compare(
    conn: &mut sqlx::PgConnection,
    before: &[Entry],
    after: &[Entry],
    mut named: Option<&mut Vec<Named>>,
) -> Result<SnapshotDiff> {
    let mut d = SnapshotDiff::default();
    let mut other_version = Vec::new();
    let mut name = |before: Option<&Entry>, after: Option<&Entry>| {
        if let Some(named) = named.as_deref_mut() {
            named.push(Named {
                before: before.copied(),
                after: after.copied(),
                changed: false,
            });
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) if b.id == a.id => {
                if b.version != a.version {
                    other_version.push((*b, *a));
                }
                if b.decile != a.decile {
                    d.decile_moves += 1;
                }
                if b.version != a.version || b.decile != a.decile {
                    name(Some(b), Some(a));
                }
                i += 1;
                j += 1;
            }
            (Some(b), a) if a.is_none_or(|a| b.id < a.id) => {
                d.removed += 1;
                name(Some(b), None);
                i += 1;
            }
            (_, a) => {
                d.added += 1;
                name(None, a);
                j += 1;
            }
        }
    }
    let mut changed = std::collections::HashSet::new();
    for pairs in other_version.chunks(10_000) {
        let ids: Vec<uuid::Uuid> = pairs
            .iter()
            .flat_map(|(b, a)| [uuid::Uuid::from_u128(b.id), uuid::Uuid::from_u128(a.id)])
            .collect();
        let versions: Vec<i64> = pairs
            .iter()
            .flat_map(|(b, a)| [b.version, a.version])
            .collect();
        let digests: std::collections::HashMap<(uuid::Uuid, i64), Option<Vec<u8>>> =
            sqlx::query_as(
                "SELECT v.household_id, v.version, v.digest FROM registry_versions v
                 JOIN unnest($1::uuid[], $2::bigint[]) AS u (household_id, version) USING (household_id, version)",
            )
            .bind(&ids)
            .bind(&versions)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id, version, digest)| ((id, version), digest))
            .collect();
        let digest = |e: &Entry| {
            digests
                .get(&(uuid::Uuid::from_u128(e.id), e.version))
                .cloned()
                .flatten()
        };
        changed.extend(
            pairs
                .iter()
                .filter(|(b, a)| digest(b).is_none() || digest(b) != digest(a))
                .map(|(b, _)| b.id),
        );
    }
    d.changed = changed.len() as u64;
    if let Some(named) = named {
        for n in named.iter_mut() {
            n.changed = n.before.is_some_and(|b| changed.contains(&b.id)) && n.after.is_some();
        }
    }
    Ok(d)
}
