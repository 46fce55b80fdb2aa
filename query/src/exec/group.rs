//! Grouping and aggregating the selected rows of one part, by the cheapest of three
//! paths (EXPLAIN names the one taken):
//!
//! 1. **Bitmap counts.** When every aggregate only counts rows and the one FACET field
//!    (or none) is a column with per-value bitmaps, a group's count is the cardinality
//!    of the selected rows AND the value's bitmap; no column is read.
//! 2. **Dictionary codes.** When every FACET field is a dictionary-coded string column,
//!    a kind, a status, a boolean or absent, rows are grouped by their codes, block by
//!    block, into a dense array of aggregate states (a hash table when the code space is
//!    large); codes become strings once per group at the end. Aggregate inputs of
//!    numeric columns (duration, start, int and double attributes) are read straight
//!    from their blocks, and TIMESERIES buckets straight from the start column.
//! 3. **Values.** Otherwise each selected row's facet values are read and hashed.
//!
//! All three respect the pass's [`Partition`] (only facet keys whose hash falls in it
//! are kept) and report overflow past the pass's group bound.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use roaring::RoaringBitmap;
use spanstore_engine::segment::reader::{BlockValues, DecodedBlock, Segment};
use spanstore_engine::segment::{unsortable_int, Intrinsic as SegIntrinsic, Storage, ValueType, BLOCK_ROWS};
use spanstore_engine::{SpanKind, StatusCode};

use super::{
    agg_field, combine_hash, engine, finish_hash, key_hash, merge_group, resolve, str_hash, value_hash, Group, Groups,
    Partition, PassSpec, Reader, Resolved, KEY_HASH_SEED,
};
use crate::agg::AggState;
use crate::ast::{Aggregate, Field, Intrinsic, OrderKey, SelectItem};
use crate::error::{QueryError, Result};
use crate::value::{GroupKey, Value};

/// Most slots of a dense code-to-group table; larger code spaces use a hash table.
const DENSE_SLOTS_MAX: u64 = 1 << 18;

/// Facet codes come from value bitmaps (each value's bitmap ANDed with the selection)
/// only when values × selected rows × this is below the segment's rows: otherwise
/// reading the facet's column at the selected rows is cheaper. Was 64 while each row's
/// code was placed by a rank (a scan of the containers before it) and while rows were
/// in trace id order (code blocks mostly stored raw, read in place); with time order
/// (code blocks zstd'd, inflated to read a few rows) and codes placed by a merge, 3
/// measured better at 100M (docs/PERFORMANCE.md, "Facet codes from bitmaps").
const BITMAP_CODES_RATIO: u64 = 3;

/// Bitmap counts (path 1) need no rows' codes, so they are kept up to this many times
/// the work of [`BITMAP_CODES_RATIO`].
const BITMAP_COUNTS_FACTOR: u64 = 8;

/// A selection of fewer than one row in this many is sparse (array containers).
const SPARSE_SELECTION: u64 = 16;

/// Everything one part's grouping needs.
pub(super) struct PartContext<'s, 'q> {
    pub segment: &'s Segment,
    pub reader: Reader<'s>,
    pub selected: &'q RoaringBitmap,
    pub filter_sets: &'q [Option<RoaringBitmap>],
    pub spec: &'q PassSpec<'q>,
    pub cancel: Option<&'q AtomicBool>,
    pub overflow: &'q AtomicBool,
    pub notes: &'q mut Vec<String>,
}

/// A facet field as codes: `0` is null, `c + 1` the value with code `c`.
enum KeySource {
    /// The field has no column here: every row is null.
    Null,
    /// A dictionary-coded string column.
    Dict { column: usize, dictionary: Arc<Vec<String>> },
    /// The kind intrinsic.
    Kind,
    /// The status intrinsic.
    Status,
    /// A boolean attribute column.
    Bool { column: usize },
    /// A plain string column (too many distinct values for a dictionary), the only
    /// facet: strings get codes in order of first sight within the part.
    Strings { column: usize, present: u64, codes: HashMap<Box<str>, u32>, values: Vec<Box<str>> },
}

/// Codes of kinds and statuses above this are not valid and read as null.
const SMALL_CODES: u32 = 15;

impl KeySource {
    fn of(segment: &Segment, resolved: &Resolved, only_facet: bool) -> Result<Option<KeySource>> {
        let dict = |column: usize| -> Result<Option<KeySource>> {
            let meta = segment.column_meta(column).map_err(engine)?;
            match meta.storage {
                Storage::Dict => {
                    Ok(Some(KeySource::Dict { column, dictionary: segment.dictionary(column).map_err(engine)? }))
                }
                Storage::Strings if only_facet => Ok(Some(KeySource::Strings {
                    column,
                    present: meta.present,
                    codes: HashMap::new(),
                    values: Vec::new(),
                })),
                _ => Ok(None),
            }
        };
        match resolved {
            Resolved::Intrinsic(Intrinsic::Kind) => Ok(Some(KeySource::Kind)),
            Resolved::Intrinsic(Intrinsic::Status) => Ok(Some(KeySource::Status)),
            Resolved::Intrinsic(Intrinsic::Name) => dict(SegIntrinsic::Name as usize),
            Resolved::Intrinsic(Intrinsic::StatusMessage) => dict(SegIntrinsic::StatusMessage as usize),
            Resolved::Intrinsic(_) => Ok(None),
            Resolved::Attr { span, resource } => match (span.as_slice(), resource.as_slice()) {
                ([], []) => Ok(Some(KeySource::Null)),
                ([(column, value_type)], []) | ([], [(column, value_type)]) => match value_type {
                    ValueType::Str => dict(*column),
                    ValueType::Bool => Ok(Some(KeySource::Bool { column: *column })),
                    _ => Ok(None),
                },
                _ => Ok(None),
            },
        }
    }

    /// Number of codes, null included.
    fn cardinality(&self) -> u64 {
        match self {
            KeySource::Null => 1,
            KeySource::Dict { dictionary, .. } => dictionary.len() as u64 + 1,
            KeySource::Kind | KeySource::Status => u64::from(SMALL_CODES) + 1,
            KeySource::Bool { .. } => 3,
            KeySource::Strings { present, .. } => present + 1,
        }
    }

    fn column(&self) -> Option<usize> {
        match self {
            KeySource::Null => None,
            KeySource::Dict { column, .. } | KeySource::Bool { column } | KeySource::Strings { column, .. } => {
                Some(*column)
            }
            KeySource::Kind => Some(SegIntrinsic::Kind as usize),
            KeySource::Status => Some(SegIntrinsic::Status as usize),
        }
    }

    /// The code of block-local row `local`; `None` for a string of a facet key outside
    /// `partition` (only the `Strings` source, the only facet, tests it here).
    fn code(&mut self, cells: &Cells, local: usize, pos: usize, partition: Partition) -> Option<u32> {
        let block = match cells {
            Cells::Absent => return Some(0),
            Cells::Full(block) => block,
            Cells::Picked(_) | Cells::Constant(_) => {
                let Some(v) = cells.int(local, pos) else { return Some(0) };
                return Some(match self {
                    KeySource::Dict { .. } => u32::try_from(v).ok().and_then(|c| c.checked_add(1)).unwrap_or(0),
                    KeySource::Kind | KeySource::Status if v < u64::from(SMALL_CODES) => v as u32 + 1,
                    KeySource::Bool { .. } => u32::from(v != 0) + 1,
                    _ => 0,
                });
            }
        };
        let Some(index) = block.value_index(local) else { return Some(0) };
        if let (BlockValues::Strings(strings), KeySource::Strings { codes, values, .. }) = (&block.values, &mut *self) {
            let Some(s) = strings.get(index) else { return Some(0) };
            if let Some(&code) = codes.get(s) {
                return Some(code);
            }
            if !partition.is_all() && !partition.admits(finish_hash(combine_hash(KEY_HASH_SEED, str_hash(s)))) {
                return None;
            }
            values.push(s.into());
            let code = values.len() as u32;
            codes.insert(s.into(), code);
            return Some(code);
        }
        Some(match (&block.values, &*self) {
            (BlockValues::Codes(codes), KeySource::Dict { .. }) => codes.get(index).map_or(0, |c| c + 1),
            (BlockValues::Ints(values), KeySource::Kind | KeySource::Status) => match values.get(index) {
                Some(&v) if v < u64::from(SMALL_CODES) => v as u32 + 1,
                _ => 0,
            },
            (BlockValues::Bools(values), KeySource::Bool { .. }) => values.get(index).map_or(0, |&b| u32::from(b) + 1),
            _ => 0,
        })
    }

    /// The value a code stands for.
    fn value(&self, code: u32) -> Value {
        let Some(code) = code.checked_sub(1) else { return Value::Null };
        match self {
            KeySource::Null => Value::Null,
            KeySource::Dict { dictionary, .. } => {
                dictionary.get(code as usize).map(|s| Value::Str(s.clone())).unwrap_or(Value::Null)
            }
            KeySource::Kind => {
                u8::try_from(code).ok().and_then(SpanKind::from_code).map(Value::Kind).unwrap_or(Value::Null)
            }
            KeySource::Status => {
                u8::try_from(code).ok().and_then(StatusCode::from_code).map(Value::Status).unwrap_or(Value::Null)
            }
            KeySource::Bool { .. } => Value::Bool(code == 1),
            KeySource::Strings { values, .. } => {
                values.get(code as usize).map(|s| Value::Str(s.to_string())).unwrap_or(Value::Null)
            }
        }
    }
}

/// Where an aggregate's input comes from.
enum InputSource {
    /// No field (count(*)), or a field absent here: null.
    Null,
    /// A numeric column read straight from its blocks.
    Number { column: usize, kind: NumberKind },
    /// Any other field, read value by value.
    Values(Resolved),
    /// `uniq` of a string column. Dictionary-coded: each group keeps the set of its
    /// rows' codes, and the sketch gets each distinct string of a group once, at the
    /// end of the part (a sketch only sees the set of values). Plain strings: each
    /// row's string is hashed in place, never copied.
    Distinct { column: usize, dictionary: Option<Arc<Vec<String>>> },
}

/// True for `uniq`, alone or inside `filter`/`rate` (which feed it row values as is).
fn is_uniq(aggregate: &Aggregate) -> bool {
    match aggregate {
        Aggregate::Uniq(_) => true,
        Aggregate::Filter { aggregate, .. } | Aggregate::Rate { aggregate, .. } => is_uniq(aggregate),
        _ => false,
    }
}

#[derive(Clone, Copy)]
enum NumberKind {
    Duration,
    Timestamp,
    Int,
    Double,
}

impl InputSource {
    /// The input of `aggregate` here.
    fn for_aggregate(segment: &Segment, aggregate: &Aggregate) -> Result<InputSource> {
        let field = agg_field(aggregate);
        if let (true, Some(field)) = (is_uniq(aggregate), field) {
            let column = match resolve(segment, field) {
                Resolved::Intrinsic(Intrinsic::Name) => Some(SegIntrinsic::Name as usize),
                Resolved::Intrinsic(Intrinsic::StatusMessage) => Some(SegIntrinsic::StatusMessage as usize),
                Resolved::Attr { span, resource } => match (span.as_slice(), resource.as_slice()) {
                    ([(column, ValueType::Str)], []) | ([], [(column, ValueType::Str)]) => Some(*column),
                    _ => None,
                },
                Resolved::Intrinsic(_) => None,
            };
            if let Some(column) = column {
                match segment.column_meta(column).map_err(engine)?.storage {
                    Storage::Dict => {
                        let dictionary = Some(segment.dictionary(column).map_err(engine)?);
                        return Ok(InputSource::Distinct { column, dictionary });
                    }
                    Storage::Strings => return Ok(InputSource::Distinct { column, dictionary: None }),
                    _ => {}
                }
            }
        }
        Ok(InputSource::of(segment, field))
    }

    fn of(segment: &Segment, field: Option<&Field>) -> InputSource {
        let Some(field) = field else { return InputSource::Null };
        match resolve(segment, field) {
            Resolved::Intrinsic(Intrinsic::Duration) => {
                InputSource::Number { column: SegIntrinsic::Duration as usize, kind: NumberKind::Duration }
            }
            Resolved::Intrinsic(Intrinsic::Start) => {
                InputSource::Number { column: SegIntrinsic::Start as usize, kind: NumberKind::Timestamp }
            }
            Resolved::Attr { span, resource } => match (span.as_slice(), resource.as_slice()) {
                ([], []) => InputSource::Null,
                ([(column, ValueType::Int)], []) | ([], [(column, ValueType::Int)]) => {
                    InputSource::Number { column: *column, kind: NumberKind::Int }
                }
                ([(column, ValueType::Double)], []) | ([], [(column, ValueType::Double)]) => {
                    InputSource::Number { column: *column, kind: NumberKind::Double }
                }
                _ => InputSource::Values(Resolved::Attr { span, resource }),
            },
            other => InputSource::Values(other),
        }
    }

    fn value(&self, cells: &Cells, local: usize, pos: usize) -> Value {
        let InputSource::Number { kind, .. } = self else { return Value::Null };
        let block = match cells {
            Cells::Absent => return Value::Null,
            Cells::Full(block) => block,
            Cells::Picked(_) | Cells::Constant(_) => {
                let Some(x) = cells.int(local, pos) else { return Value::Null };
                return match kind {
                    NumberKind::Duration => Value::Duration(x as i64),
                    NumberKind::Timestamp => Value::Timestamp(x as i64),
                    NumberKind::Int => Value::Int(unsortable_int(x)),
                    NumberKind::Double => Value::Float(f64::from_bits(x)),
                };
            }
        };
        let Some(index) = block.value_index(local) else { return Value::Null };
        match (&block.values, kind) {
            (BlockValues::Ints(v), NumberKind::Duration) => {
                v.get(index).map_or(Value::Null, |&x| Value::Duration(x as i64))
            }
            (BlockValues::Ints(v), NumberKind::Timestamp) => {
                v.get(index).map_or(Value::Null, |&x| Value::Timestamp(x as i64))
            }
            (BlockValues::Ints(v), NumberKind::Int) => {
                v.get(index).map_or(Value::Null, |&x| Value::Int(unsortable_int(x)))
            }
            (BlockValues::Doubles(v), NumberKind::Double) => {
                v.get(index).map_or(Value::Null, |&x| Value::Float(f64::from_bits(x)))
            }
            _ => Value::Null,
        }
    }
}

/// One block of one column, for the selected rows of the block: nothing (the column
/// is absent), decoded whole, or only the selected rows' values in stored form (in
/// selection order), when the block holds few selected rows.
enum Cells {
    Absent,
    Full(DecodedBlock),
    Picked(Vec<Option<u64>>),
    /// One value for every row (a `start` block inside one TIMESERIES bucket).
    Constant(u64),
}

impl Cells {
    /// The stored integer (or dictionary code) at block-local row `local`, the
    /// `pos`-th selected row.
    fn int(&self, local: usize, pos: usize) -> Option<u64> {
        match self {
            Cells::Absent => None,
            Cells::Full(block) => match &block.values {
                BlockValues::Codes(codes) => codes.get(block.value_index(local)?).map(|&c| u64::from(c)),
                _ => block.int(local),
            },
            Cells::Picked(values) => values.get(pos).copied().flatten(),
            Cells::Constant(value) => Some(*value),
        }
    }
}

/// A block whose selected rows are fewer than one in this many is read row by row
/// ([`Segment::read_block_rows`]) rather than decoded whole.
pub(super) const PICK_RATIO: usize = 4;

/// A hasher for u64 keys already spread by [`finish_hash`]-like mixing.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = finish_hash(v);
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = finish_hash(u64::from(v));
    }
}

/// Composite code key to group slot.
enum Slots {
    Dense(Vec<u32>),
    Hashed(HashMap<u64, u32, BuildHasherDefault<MixHasher>>),
}

impl Slots {
    /// The slot of `key`, and whether it is new (then numbered `next`).
    fn get_or_insert(&mut self, key: u64, next: u32) -> Option<(u32, bool)> {
        match self {
            Slots::Dense(table) => {
                let slot = table.get_mut(key as usize)?;
                if *slot == u32::MAX {
                    *slot = next;
                    Some((next, true))
                } else {
                    Some((*slot, false))
                }
            }
            Slots::Hashed(map) => {
                let mut inserted = false;
                let slot = *map.entry(key).or_insert_with(|| {
                    inserted = true;
                    next
                });
                Some((slot, inserted))
            }
        }
    }

    /// The slot of `key`, numbering a new key next in `slot_keys`: `Ok(None)` when a
    /// new key would pass `groups_max` (the pass overflows), with whether it is new.
    fn claim(&mut self, key: u64, slot_keys: &mut Vec<u64>, groups_max: usize) -> Result<Option<(u32, bool)>> {
        let Some((slot, new)) = self.get_or_insert(key, slot_keys.len() as u32) else {
            return Err(QueryError::Internal("group code out of the dense table".into()));
        };
        if new {
            if slot_keys.len() >= groups_max {
                return Ok(None);
            }
            slot_keys.push(key);
        }
        Ok(Some((slot, new)))
    }
}

impl PartContext<'_, '_> {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(AtomicOrdering::Relaxed)) {
            return Err(QueryError::Cancelled);
        }
        Ok(())
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if self.spec.explain {
            self.notes.push(text());
        }
    }

    /// Block `block` of `column` for the selected rows `locals` (block-local, in
    /// order): only those rows when they are few and `pick` allows, else the whole
    /// block.
    fn cells(&self, column: Option<usize>, block: usize, locals: &[u32], pick: bool) -> Result<Cells> {
        let Some(column) = column else { return Ok(Cells::Absent) };
        if pick && locals.len() * PICK_RATIO < BLOCK_ROWS {
            return Ok(Cells::Picked(self.segment.read_block_rows(column, block, locals).map_err(engine)?));
        }
        Ok(Cells::Full(self.segment.read_block(column, block).map_err(engine)?))
    }

    /// Groups and aggregates the selected rows into `groups`; false on overflow.
    pub fn aggregate(&mut self, groups: &mut Groups) -> Result<bool> {
        if self.selected.is_empty() {
            self.note(|| "group-by: nothing selected".into());
            return Ok(true);
        }
        if let Some(fits) = self.bitmap_counts(groups)? {
            return Ok(fits);
        }
        if let Some(fits) = self.code_groups(groups)? {
            return Ok(fits);
        }
        self.value_groups(groups)
    }

    /// Path 1: counts from bitmap cardinalities; `None` when not applicable.
    fn bitmap_counts(&mut self, groups: &mut Groups) -> Result<Option<bool>> {
        let spec = self.spec;
        let query = spec.query;
        if spec.buckets.is_some() || query.facets.len() > 1 || !spec.aggregates.iter().all(|a| AggState::counts_rows(a))
        {
            return Ok(None);
        }
        let sets: Vec<&RoaringBitmap> = self.filter_sets.iter().map(|f| f.as_ref().unwrap_or(self.selected)).collect();
        let fresh = || -> Vec<AggState> { spec.aggregates.iter().map(|a| AggState::new(a)).collect() };
        let add = |states: &mut Vec<AggState>, counts: &[u64]| -> Result<()> {
            for (state, &n) in states.iter_mut().zip(counts) {
                if !state.add_rows(n) {
                    return Err(QueryError::Internal("a row count fed to another aggregate".into()));
                }
            }
            Ok(())
        };
        let Some(facet) = query.facets.first() else {
            // No FACET: one group, the cardinalities of the selected rows.
            let counts: Vec<u64> = sets.iter().map(|s| s.len()).collect();
            let mut states = fresh();
            add(&mut states, &counts)?;
            merge_group(groups, (Vec::new(), None), Group { keys: Vec::new(), states });
            self.note(|| "group-by: counted from the selection bitmap, no column read".into());
            return Ok(Some(true));
        };
        let resolved = resolve(self.segment, facet);
        let (column, decode): (usize, Box<dyn Fn(u64) -> Value>) = match &resolved {
            Resolved::Intrinsic(Intrinsic::Kind) => (
                SegIntrinsic::Kind as usize,
                Box::new(|k| {
                    u8::try_from(k).ok().and_then(SpanKind::from_code).map(Value::Kind).unwrap_or(Value::Null)
                }),
            ),
            Resolved::Intrinsic(Intrinsic::Status) => (
                SegIntrinsic::Status as usize,
                Box::new(|k| {
                    u8::try_from(k).ok().and_then(StatusCode::from_code).map(Value::Status).unwrap_or(Value::Null)
                }),
            ),
            Resolved::Intrinsic(i @ (Intrinsic::Name | Intrinsic::StatusMessage)) => {
                let column = if *i == Intrinsic::Name { SegIntrinsic::Name } else { SegIntrinsic::StatusMessage };
                let column = column as usize;
                if self.segment.column_meta(column).map_err(engine)?.storage != Storage::Dict {
                    return Ok(None);
                }
                let dictionary = self.segment.dictionary(column).map_err(engine)?;
                (
                    column,
                    Box::new(move |k| dictionary.get(k as usize).map(|s| Value::Str(s.clone())).unwrap_or(Value::Null)),
                )
            }
            Resolved::Attr { span, resource } => match (span.as_slice(), resource.as_slice()) {
                ([(column, value_type)], []) | ([], [(column, value_type)]) => match value_type {
                    ValueType::Str => {
                        if self.segment.column_meta(*column).map_err(engine)?.storage != Storage::Dict {
                            return Ok(None);
                        }
                        let dictionary = self.segment.dictionary(*column).map_err(engine)?;
                        (
                            *column,
                            Box::new(move |k| {
                                dictionary.get(k as usize).map(|s| Value::Str(s.clone())).unwrap_or(Value::Null)
                            }),
                        )
                    }
                    ValueType::Int => (*column, Box::new(|k| Value::Int(unsortable_int(k)))),
                    ValueType::Bool => (*column, Box::new(|k| Value::Bool(k != 0))),
                    ValueType::Double => return Ok(None),
                },
                _ => return Ok(None),
            },
            Resolved::Intrinsic(_) => return Ok(None),
        };
        let Some(bitmaps) = self.segment.bitmap_set(column).map_err(engine)? else { return Ok(None) };
        // Many values against a sparse selection (arrays of scattered rows, whose ANDs
        // cost their lengths): reading the facet's column at the selected rows (path 2)
        // is cheaper than an AND per value.
        let rows = self.segment.row_count() as u64;
        let work = (bitmaps.len() as u64).saturating_mul(self.selected.len()).saturating_mul(BITMAP_CODES_RATIO);
        if self.selected.len().saturating_mul(SPARSE_SELECTION) < rows
            && work >= rows.saturating_mul(BITMAP_COUNTS_FACTOR)
        {
            return Ok(None);
        }
        let partition = spec.partition;
        let mut covered = vec![0u64; sets.len()];
        let mut selected_covered = 0u64;
        let mut kept = 0usize;
        for (n, (key, bitmap)) in bitmaps.iter().enumerate() {
            if n % 256 == 0 {
                self.check_cancel()?;
            }
            let in_selection = self.selected.intersection_len(bitmap);
            if in_selection == 0 {
                continue;
            }
            selected_covered += in_selection;
            // An aggregate without its own filter counts the selection: its AND is the
            // one just taken.
            let counts: Vec<u64> = sets
                .iter()
                .map(|s| if std::ptr::eq(*s, self.selected) { in_selection } else { s.intersection_len(bitmap) })
                .collect();
            for (c, n) in covered.iter_mut().zip(&counts) {
                *c += n;
            }
            let value = decode(key);
            let group_key = vec![value.group_key()];
            if !partition.admits(key_hash(&group_key)) {
                continue;
            }
            let mut states = fresh();
            add(&mut states, &counts)?;
            merge_group(groups, (group_key, None), Group { keys: vec![value], states });
            kept += 1;
        }
        // Selected rows in no value's bitmap have no value: the null group.
        if self.selected.len() > selected_covered && partition.admits(key_hash(&[GroupKey::Null])) {
            let counts: Vec<u64> = sets.iter().zip(&covered).map(|(s, c)| s.len().saturating_sub(*c)).collect();
            let mut states = fresh();
            add(&mut states, &counts)?;
            merge_group(groups, (vec![GroupKey::Null], None), Group { keys: vec![Value::Null], states });
            kept += 1;
        }
        let values = bitmaps.len();
        self.note(|| {
            format!(
                "group-by: bitmap counts, selection AND each of {values} value bitmaps, {kept} groups, no column read"
            )
        });
        Ok(Some(groups.len() <= spec.groups_max))
    }

    /// Path 2: group by dictionary (and other small) codes; `None` when a facet is not
    /// code-shaped here.
    fn code_groups(&mut self, groups: &mut Groups) -> Result<Option<bool>> {
        let spec = self.spec;
        let mut keys: Vec<KeySource> = Vec::with_capacity(spec.query.facets.len());
        let only_facet = spec.query.facets.len() == 1;
        for facet in &spec.query.facets {
            match KeySource::of(self.segment, &resolve(self.segment, facet), only_facet)? {
                Some(k) => keys.push(k),
                None => return Ok(None),
            }
        }
        // Mixed-radix composite of the codes, then the bucket index.
        let mut strides = Vec::with_capacity(keys.len());
        let mut space = 1u64;
        for k in keys.iter().rev() {
            strides.push(space);
            space = match space.checked_mul(k.cardinality()) {
                Some(s) => s,
                None => return Ok(None),
            };
        }
        strides.reverse();
        let bucket_count = spec.buckets.map_or(1, |b| b.count);
        let Some(total) = space.checked_mul(bucket_count) else { return Ok(None) };
        let mut slots = if total <= DENSE_SLOTS_MAX {
            Slots::Dense(vec![u32::MAX; total as usize])
        } else {
            Slots::Hashed(HashMap::default())
        };
        let dense = matches!(slots, Slots::Dense(_));
        // Per-code hashes, for the partition test (only when partitioned).
        let partition = spec.partition;
        let code_hashes: Vec<Vec<u64>> = if partition.is_all() {
            Vec::new()
        } else {
            keys.iter()
                .map(|k| (0..k.cardinality() as u32).map(|c| value_hash(&k.value(c).group_key())).collect())
                .collect()
        };
        // A very sparse selection takes its codes from the value bitmaps, so the facet
        // columns' blocks are not decoded at all.
        let mut precomputed: Vec<Option<Vec<u32>>> = Vec::with_capacity(keys.len());
        for k in &keys {
            precomputed.push(self.codes_from_bitmaps(k)?);
        }
        let from_bitmaps = precomputed.iter().filter(|p| p.is_some()).count();
        let inputs: Vec<InputSource> =
            spec.aggregates.iter().map(|a| InputSource::for_aggregate(self.segment, a)).collect::<Result<_>>()?;
        // Per state (slot × aggregate) of a `Distinct` input: the codes it saw.
        let mut distinct: Vec<HashSet<u32, BuildHasherDefault<MixHasher>>> = Vec::new();
        let any_distinct = inputs.iter().any(|i| matches!(i, InputSource::Distinct { .. }));
        let template: Vec<AggState> = spec.aggregates.iter().map(|a| AggState::new(a)).collect();
        let aggregate_count = template.len();
        let mut states: Vec<AggState> = Vec::new();
        let mut slot_keys: Vec<u64> = Vec::new();
        let mut key_blocks: Vec<Cells> = Vec::new();
        let mut input_blocks: Vec<Cells> = Vec::new();
        let mut start_block = Cells::Absent;
        let mut locals: Vec<u32> = Vec::new();
        let mut pos = 0usize;
        let (mut picked_blocks, mut whole_blocks) = (0u64, 0u64);
        let mut codes = vec![0u32; keys.len()];
        let strings_facet = matches!(keys.first(), Some(KeySource::Strings { .. }));
        let null_hash = key_hash(&[GroupKey::Null]);
        let count_only = spec.aggregates.iter().all(|a| AggState::counts_rows(a));
        let mut row_counts: Vec<u64> = Vec::new();
        let mut last = (u64::MAX, 0u32);
        // TIMESERIES: a block whose `start` zone map lies inside one bucket needs no
        // `start` values (rows are in time order, so most blocks cover seconds). When
        // nothing else is read per row either (row counts, no facet, no aggregate
        // filter), such a block's selected rows are counted from the bitmap alone.
        let start_zones = match spec.buckets {
            Some(_) => Some(self.segment.column_meta(SegIntrinsic::Start as usize).map_err(engine)?),
            None => None,
        };
        let one_bucket = |block: usize| -> Option<u64> {
            let buckets = spec.buckets?;
            let zone = start_zones?.blocks.get(block)?;
            let low = buckets.index(zone.min as i64)?;
            (buckets.index(zone.max as i64)? == low).then_some(low)
        };
        let count_blocks =
            keys.is_empty() && count_only && partition.is_all() && self.filter_sets.iter().all(Option::is_none);
        let mut counted_blocks = 0u64;
        // The selection block by block: each block's selected rows are gathered first
        // (so a block can be read at those rows only), then grouped one by one.
        let mut source = self.selected.iter();
        let mut peeked = source.next();
        let mut block_first = 0u32;
        let mut rank = 0usize;
        loop {
            if pos == locals.len() {
                let Some(next) = peeked else { break };
                let block = next as usize / BLOCK_ROWS;
                self.check_cancel()?;
                if self.overflow.load(AtomicOrdering::Relaxed) {
                    return Ok(Some(false));
                }
                let first = (block * BLOCK_ROWS) as u32;
                let end = first.saturating_add(BLOCK_ROWS as u32);
                let bucket = one_bucket(block);
                if let (true, Some(index)) = (count_blocks, bucket) {
                    let n = self.selected.range_cardinality(first..end);
                    source.advance_to(end);
                    peeked = source.next();
                    rank += n as usize;
                    counted_blocks += 1;
                    let Some((slot, new)) = slots.claim(index, &mut slot_keys, spec.groups_max)? else {
                        return Ok(Some(false));
                    };
                    if new {
                        row_counts.resize(row_counts.len() + aggregate_count, 0);
                    }
                    let base = slot as usize * aggregate_count;
                    for c in row_counts.iter_mut().skip(base).take(aggregate_count) {
                        *c += n;
                    }
                    continue;
                }
                locals.clear();
                while let Some(row) = peeked.filter(|&row| row < end) {
                    locals.push(row - first);
                    peeked = source.next();
                }
                block_first = first;
                key_blocks = keys
                    .iter()
                    .zip(&precomputed)
                    .map(|(k, p)| {
                        if p.is_some() {
                            Ok(Cells::Absent)
                        } else {
                            self.cells(k.column(), block, &locals, !matches!(k, KeySource::Strings { .. }))
                        }
                    })
                    .collect::<Result<_>>()?;
                input_blocks = inputs
                    .iter()
                    .map(|i| match i {
                        InputSource::Number { column, .. } => self.cells(Some(*column), block, &locals, true),
                        InputSource::Distinct { column, dictionary } => {
                            self.cells(Some(*column), block, &locals, dictionary.is_some())
                        }
                        _ => Ok(Cells::Absent),
                    })
                    .collect::<Result<_>>()?;
                start_block = match (spec.buckets, bucket, start_zones) {
                    (Some(_), Some(_), Some(zones)) => {
                        Cells::Constant(zones.blocks.get(block).map_or(0, |zone| zone.min))
                    }
                    (Some(_), _, _) => self.cells(Some(SegIntrinsic::Start as usize), block, &locals, true)?,
                    (None, _, _) => Cells::Absent,
                };
                pos = 0;
                let all = || key_blocks.iter().chain(&input_blocks).chain(std::iter::once(&start_block));
                picked_blocks += u64::from(all().any(|c| matches!(c, Cells::Picked(_))));
                whole_blocks += u64::from(all().any(|c| matches!(c, Cells::Full(_))));
            }
            let row_pos = pos;
            let local = locals.get(pos).copied().unwrap_or(0) as usize;
            let row = block_first + local as u32;
            pos += 1;
            let n = rank;
            rank += 1;
            let mut key = 0u64;
            let mut admitted = true;
            for (i, k) in keys.iter_mut().enumerate() {
                let code = match precomputed.get(i).and_then(Option::as_ref) {
                    Some(by_rank) => by_rank.get(n).copied().unwrap_or(0),
                    None => match k.code(key_blocks.get(i).unwrap_or(&Cells::Absent), local, row_pos, partition) {
                        Some(code) => code,
                        None => {
                            admitted = false;
                            break;
                        }
                    },
                };
                if let Some(c) = codes.get_mut(i) {
                    *c = code;
                }
                key += u64::from(code) * strides.get(i).copied().unwrap_or(0);
            }
            if !admitted {
                continue;
            }
            if strings_facet {
                // Strings were tested as they got codes; the null key is tested here.
                if key == 0 && !partition.admits(null_hash) {
                    continue;
                }
            } else if !partition.is_all() {
                let mut h = KEY_HASH_SEED;
                for (i, &code) in codes.iter().enumerate() {
                    let value = code_hashes.get(i).and_then(|h| h.get(code as usize)).copied().unwrap_or(0);
                    h = combine_hash(h, value);
                }
                if !partition.admits(finish_hash(h)) {
                    continue;
                }
            }
            if let Some(buckets) = spec.buckets {
                let start = start_block.int(local, row_pos).unwrap_or(0) as i64;
                let Some(index) = buckets.index(start) else {
                    return Err(QueryError::Internal(format!("start {start} outside the TIMESERIES range")));
                };
                key = key * buckets.count + index;
            }
            // Runs of one key (nulls, above all) skip the table.
            let slot = if key == last.0 {
                last.1
            } else {
                let Some((slot, new)) = slots.claim(key, &mut slot_keys, spec.groups_max)? else {
                    return Ok(Some(false));
                };
                if new {
                    if count_only {
                        row_counts.resize(row_counts.len() + aggregate_count, 0);
                    } else {
                        states.extend(template.iter().cloned());
                        if any_distinct {
                            distinct.resize_with(states.len(), HashSet::default);
                        }
                    }
                }
                last = (key, slot);
                slot
            };
            let base = slot as usize * aggregate_count;
            if count_only {
                // Row counts only: a counter per slot and aggregate, no state per row.
                for a in 0..aggregate_count {
                    if let Some(Some(set)) = self.filter_sets.get(a) {
                        if !set.contains(row) {
                            continue;
                        }
                    }
                    if let Some(c) = row_counts.get_mut(base + a) {
                        *c += 1;
                    }
                }
                continue;
            }
            for (a, input) in inputs.iter().enumerate() {
                if let Some(Some(set)) = self.filter_sets.get(a) {
                    if !set.contains(row) {
                        continue;
                    }
                }
                let value = match input {
                    InputSource::Distinct { dictionary, .. } => {
                        let cells = input_blocks.get(a).unwrap_or(&Cells::Absent);
                        if dictionary.is_some() {
                            let code = cells.int(local, row_pos).and_then(|c| u32::try_from(c).ok());
                            if let (Some(code), Some(set)) = (code, distinct.get_mut(base + a)) {
                                set.insert(code);
                            }
                        } else if let Cells::Full(block) = cells {
                            if let (BlockValues::Strings(strings), Some(index)) =
                                (&block.values, block.value_index(local))
                            {
                                if let (Some(text), Some(state)) = (strings.get(index), states.get_mut(base + a)) {
                                    state.add_str(text);
                                }
                            }
                        }
                        continue;
                    }
                    InputSource::Values(resolved) => self.reader.value(resolved, row)?,
                    other => other.value(input_blocks.get(a).unwrap_or(&Cells::Absent), local, row_pos),
                };
                if let Some(state) = states.get_mut(base + a) {
                    state.add(&value);
                }
            }
        }
        // Distinct codes to strings, once per group.
        for (index, codes) in distinct.iter().enumerate() {
            let Some(InputSource::Distinct { dictionary: Some(dictionary), .. }) =
                inputs.get(index % aggregate_count.max(1))
            else {
                continue;
            };
            let Some(state) = states.get_mut(index) else { continue };
            let mut codes: Vec<u32> = codes.iter().copied().collect();
            codes.sort_unstable();
            for code in codes {
                if let Some(text) = dictionary.get(code as usize) {
                    state.add_str(text);
                }
            }
        }
        // Codes to values, once per group.
        let group_count = slot_keys.len();
        if count_only {
            for (state, &n) in template.iter().cycle().zip(&row_counts) {
                let mut state = state.clone();
                if !state.add_rows(n) {
                    return Err(QueryError::Internal("a row count fed to another aggregate".into()));
                }
                states.push(state);
            }
        }
        let mut states = states.into_iter();
        for mut key in slot_keys {
            let bucket = match spec.buckets {
                Some(b) => {
                    let index = key % b.count;
                    key /= b.count;
                    Some(b.first + index as i64 * b.interval)
                }
                None => None,
            };
            let values: Vec<Value> = keys
                .iter()
                .zip(&strides)
                .map(|(k, stride)| k.value(((key / stride) % k.cardinality()) as u32))
                .collect();
            let group_key = values.iter().map(Value::group_key).collect();
            let group_states: Vec<AggState> = states.by_ref().take(aggregate_count).collect();
            merge_group(groups, (group_key, bucket), Group { keys: values, states: group_states });
        }
        let layout = if dense { format!("dense table of {total} slots") } else { "hash table".to_string() };
        let source = if from_bitmaps > 0 {
            format!(" ({from_bitmaps} of the facets' codes from value bitmaps, their columns not read)")
        } else {
            String::new()
        };
        let what = if strings_facet { "codes of first sight of a plain string column" } else { "dictionary codes" };
        let counted = if counted_blocks > 0 {
            format!("; {counted_blocks} blocks inside one bucket counted from the selection bitmap")
        } else {
            String::new()
        };
        let reads = if picked_blocks > 0 {
            format!(
                "; {picked_blocks} blocks read at the selected rows only, {whole_blocks} with columns decoded whole"
            )
        } else {
            String::new()
        };
        self.note(|| format!("group-by: {what}, {group_count} groups in a {layout}{source}{reads}{counted}"));
        Ok(Some(groups.len() <= spec.groups_max))
    }

    /// For a facet column with value bitmaps and a selection sparse enough (see
    /// [`BITMAP_CODES_RATIO`]): the code of every selected row, in selection order (0
    /// for rows in no bitmap); `None` otherwise.
    fn codes_from_bitmaps(&self, key: &KeySource) -> Result<Option<Vec<u32>>> {
        let column = match key {
            KeySource::Dict { column, .. } | KeySource::Bool { column } => *column,
            KeySource::Kind => SegIntrinsic::Kind as usize,
            KeySource::Status => SegIntrinsic::Status as usize,
            KeySource::Null | KeySource::Strings { .. } => return Ok(None),
        };
        let Some(bitmaps) = self.segment.bitmap_set(column).map_err(engine)? else { return Ok(None) };
        let work = (bitmaps.len() as u64).saturating_mul(self.selected.len()).saturating_mul(BITMAP_CODES_RATIO);
        if work >= self.segment.row_count() as u64 {
            return Ok(None);
        }
        // (row, code) of every selected row that has a value, then in row order, walked
        // beside the selection (a rank per row cost a scan of the containers before it).
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (value, bitmap) in bitmaps.iter() {
            self.check_cancel()?;
            let code = match key {
                KeySource::Kind | KeySource::Status if value >= u64::from(SMALL_CODES) => continue,
                _ => u32::try_from(value).ok().and_then(|v| v.checked_add(1)),
            };
            let Some(code) = code else { continue };
            pairs.extend((self.selected & bitmap).iter().map(|row| (row, code)));
        }
        pairs.sort_unstable();
        let mut codes = Vec::with_capacity(self.selected.len() as usize);
        let mut next = pairs.iter().peekable();
        for row in self.selected.iter() {
            let mut code = 0;
            while let Some(&&(r, c)) = next.peek() {
                if r > row {
                    break;
                }
                if r == row {
                    code = c;
                }
                next.next();
            }
            codes.push(code);
        }
        Ok(Some(codes))
    }

    /// Path 3: facet values read row by row.
    fn value_groups(&mut self, groups: &mut Groups) -> Result<bool> {
        let spec = self.spec;
        let facets: Vec<Resolved> = spec.query.facets.iter().map(|f| resolve(self.segment, f)).collect();
        let inputs: Vec<Option<Resolved>> =
            spec.aggregates.iter().map(|a| agg_field(a).map(|f| resolve(self.segment, f))).collect();
        let before = groups.len();
        let partition = spec.partition;
        for (n, row) in self.selected.iter().enumerate() {
            if n % 8192 == 0 {
                self.check_cancel()?;
                if self.overflow.load(AtomicOrdering::Relaxed) {
                    return Ok(false);
                }
            }
            let mut keys = Vec::with_capacity(facets.len());
            for facet in &facets {
                keys.push(self.reader.value(facet, row)?);
            }
            let facet_key: Vec<GroupKey> = keys.iter().map(Value::group_key).collect();
            if !partition.is_all() && !partition.admits(key_hash(&facet_key)) {
                continue;
            }
            let bucket = match spec.buckets {
                Some(b) => {
                    let start = self.reader.intrinsic(Intrinsic::Start, row)?.as_f64().unwrap_or(0.0) as i64;
                    Some(start.div_euclid(b.interval) * b.interval)
                }
                None => None,
            };
            let group_key = (facet_key, bucket);
            if !groups.contains_key(&group_key) && groups.len() >= spec.groups_max {
                return Ok(false);
            }
            let group = groups
                .entry(group_key)
                .or_insert_with(|| Group { keys, states: spec.aggregates.iter().map(|a| AggState::new(a)).collect() });
            for (a, state) in group.states.iter_mut().enumerate() {
                if let Some(Some(set)) = self.filter_sets.get(a) {
                    if !set.contains(row) {
                        continue;
                    }
                }
                let value = match inputs.get(a) {
                    Some(Some(r)) => self.reader.value(r, row)?,
                    _ => Value::Null,
                };
                state.add(&value);
            }
        }
        let added = groups.len() - before;
        self.note(|| format!("group-by: facet values read row by row, {added} new groups"));
        Ok(true)
    }

    /// A plain (non-aggregate) query: the sort key of every selected row.
    pub fn rows(&mut self, part_index: usize, out: &mut Vec<(Vec<Value>, usize, u32)>) -> Result<()> {
        let query = self.spec.query;
        let order_fields: Vec<Resolved> = query
            .order_by
            .iter()
            .filter_map(|o| match &o.key {
                OrderKey::Field(f) => Some(resolve(self.segment, f)),
                OrderKey::Aggregate(_) => None,
            })
            .collect();
        let default_order = query.order_by.is_empty();
        debug_assert!(!query.select.iter().any(|s| matches!(s, SelectItem::Aggregate { .. })));
        for (n, row) in self.selected.iter().enumerate() {
            if n % 8192 == 0 {
                self.check_cancel()?;
            }
            let key = if default_order {
                vec![self.reader.intrinsic(Intrinsic::Start, row)?]
            } else {
                order_fields.iter().map(|r| self.reader.value(r, row)).collect::<Result<Vec<_>>>()?
            };
            out.push((key, part_index, row));
        }
        Ok(())
    }
}
