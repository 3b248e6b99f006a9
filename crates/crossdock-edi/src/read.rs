//! Typed reading of whole inputs: every set checked (envelope and content), typed when crossdock
//! models it, and handed over with its problems — in bounded memory for any `Read`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::envelope::{
    GroupHeader, GroupReport, Handler, InterchangeHeader, InterchangeReport, SetHeader, SetReport,
    Stats, walk_read, walk_slice,
};
use crate::problem::{Position, Problem};
use crate::sets::{self, Document};
use crate::{Delimiters, Segment};

/// One set as read: where it is, what it is, and everything wrong with it.
#[derive(Debug)]
pub struct SetRead<'a> {
    pub interchange: &'a InterchangeHeader,
    pub group: &'a GroupHeader,
    pub report: &'a SetReport,
    /// `None` for a set id crossdock does not type, or one too broken to read.
    pub document: Option<Document>,
    /// Envelope problems of the set, then problems with its content.
    pub problems: &'a [Problem],
}

impl SetRead<'_> {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// What a typed read reports besides the sets themselves.
pub trait TypedHandler {
    /// One set. Take `set.document` to keep it; a document left there is dropped by the reader
    /// (on the thread that built it, when reading in parallel).
    fn set(&mut self, set: &mut SetRead<'_>);
    fn group_end(&mut self, _interchange: &InterchangeHeader, _report: &GroupReport) {}
    fn interchange_end(&mut self, _report: &InterchangeReport) {}
}

struct Typed<'h, H> {
    handler: &'h mut H,
    interchange: InterchangeHeader,
    interchange_index: u32,
    group: GroupHeader,
    group_index: u32,
    delimiters: Delimiters,
    /// The open set's body, copied so it outlives the reader's buffer.
    body: SetBody,
    typed: bool,
    problems: Vec<Problem>,
}

impl<H: TypedHandler> Handler for Typed<'_, H> {
    fn interchange_start(&mut self, header: &InterchangeHeader) {
        self.interchange = header.clone();
        self.interchange_index += 1;
        self.group_index = 0;
        if let Some(delimiters) = header.delimiters {
            self.delimiters = delimiters;
        }
    }

    fn group_start(&mut self, header: &GroupHeader) {
        self.group = header.clone();
        self.group_index += 1;
    }

    fn set_start(&mut self, header: &SetHeader) {
        self.body.bytes.clear();
        self.body.spans.clear();
        self.typed = sets::is_typed(&header.id);
    }

    #[inline]
    fn segment(&mut self, segment: &Segment<'_>, _index: u32) {
        if self.typed {
            self.body.push(segment);
        }
    }

    fn set_end(&mut self, report: &SetReport) {
        self.problems.clear();
        self.problems.extend(report.problems.iter().cloned());
        let document = if self.typed {
            let position = Position {
                segment_id: None,
                ..report.position(self.interchange_index, Some(self.group_index))
            };
            type_body(
                &report.header.id,
                &self.body.bytes,
                &self.body.spans,
                self.delimiters,
                &position,
                &mut self.problems,
            )
        } else {
            None
        };
        self.handler.set(&mut SetRead {
            interchange: &self.interchange,
            group: &self.group,
            report,
            document,
            problems: &self.problems,
        });
    }

    fn group_end(&mut self, report: &GroupReport) {
        self.handler.group_end(&self.interchange, report);
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        self.handler.interchange_end(report);
    }
}

impl<'h, H> Typed<'h, H> {
    fn new(handler: &'h mut H) -> Self {
        Typed {
            handler,
            interchange: InterchangeHeader::default(),
            interchange_index: 0,
            group: GroupHeader::default(),
            group_index: 0,
            delimiters: Delimiters::default(),
            body: SetBody::with_capacity(0),
            typed: false,
            problems: Vec::new(),
        }
    }
}

/// Where one segment of a copied set body is: start, end, and its offset in the input.
type Span = (usize, usize, u64);

/// A set's body copied out of the reader's buffer: its segments end to end.
struct SetBody {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl SetBody {
    fn with_capacity(bytes: usize) -> Self {
        SetBody {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, segment: &Segment<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(segment.raw());
        self.spans.push((start, self.bytes.len(), segment.offset()));
    }
}

/// Types one set from its body (segments copied end to end, `spans` locating each).
fn type_body(
    id: &str,
    body: &[u8],
    spans: &[Span],
    delimiters: Delimiters,
    position: &Position,
    problems: &mut Vec<Problem>,
) -> Option<Document> {
    let segments: Vec<Segment<'_>> = spans
        .iter()
        .map(|&(start, end, offset)| Segment::within(body, start, end, offset, delimiters))
        .collect();
    sets::read_body(id, body, &segments, position, problems)
}

/// Reads every set of an input held in memory.
pub fn read_slice(input: &[u8], handler: &mut impl TypedHandler) -> Stats {
    walk_slice(input, &mut Typed::new(handler))
}

/// Reads every set of any `Read`, in memory bounded by the largest set.
pub fn read_stream<R: Read>(
    input: R,
    handler: &mut impl TypedHandler,
) -> Result<Stats, std::io::Error> {
    walk_read(input, &mut Typed::new(handler))
}

/// Batches in flight between the reader, the typing workers and the caller's thread; with
/// [`BATCH_BYTES`] this bounds memory (about 2 × 16 × 64 KiB of set bodies and their documents).
const IN_FLIGHT: usize = 16;
/// Sets are handed on in batches of about this many body bytes (or [`BATCH_ITEMS`] sets), so a
/// thread hand-off is paid per batch, not per set.
const BATCH_BYTES: usize = 64 * 1024;
const BATCH_ITEMS: usize = 64;

/// What the reading thread hands on, in input order.
enum Item {
    Set {
        interchange: Arc<InterchangeHeader>,
        group: Arc<GroupHeader>,
        report: SetReport,
        position: Position,
        /// The copied body of a set crossdock types, and the delimiters to split it with.
        body: Option<(SetBody, Delimiters)>,
    },
    GroupEnd {
        interchange: Arc<InterchangeHeader>,
        report: GroupReport,
    },
    InterchangeEnd(InterchangeReport),
}

/// What a worker hands back.
enum Done {
    Set {
        interchange: Arc<InterchangeHeader>,
        group: Arc<GroupHeader>,
        report: SetReport,
        document: Option<Document>,
        problems: Vec<Problem>,
        /// The worker that built the document, which also frees what the handler leaves.
        worker: usize,
    },
    GroupEnd {
        interchange: Arc<InterchangeHeader>,
        report: GroupReport,
    },
    InterchangeEnd(InterchangeReport),
}

impl Item {
    /// Types the set; its body buffer goes to `recycle` for the reader to fill again.
    fn finish(self, worker: usize, recycle: &SyncSender<SetBody>) -> Done {
        match self {
            Item::Set {
                interchange,
                group,
                report,
                position,
                body,
            } => {
                let mut problems = report.problems.clone();
                let document = body.and_then(|(mut body, delimiters)| {
                    let document = type_body(
                        &report.header.id,
                        &body.bytes,
                        &body.spans,
                        delimiters,
                        &position,
                        &mut problems,
                    );
                    body.bytes.clear();
                    body.spans.clear();
                    // A full pool just drops the buffer.
                    let _ = recycle.try_send(body);
                    document
                });
                Done::Set {
                    interchange,
                    group,
                    report,
                    document,
                    problems,
                    worker,
                }
            }
            Item::GroupEnd {
                interchange,
                report,
            } => Done::GroupEnd {
                interchange,
                report,
            },
            Item::InterchangeEnd(report) => Done::InterchangeEnd(report),
        }
    }
}

/// The reading thread's handler: copies each typed set's body out of the stream buffer and hands
/// it on with a sequence number.
struct Producer {
    tx: SyncSender<(u64, Vec<Item>)>,
    /// Body buffers the workers are done with.
    pool: Receiver<SetBody>,
    seq: u64,
    closed: bool,
    batch: Vec<Item>,
    batch_bytes: usize,
    interchange: Arc<InterchangeHeader>,
    interchange_index: u32,
    group: Arc<GroupHeader>,
    group_index: u32,
    delimiters: Delimiters,
    body: Option<SetBody>,
    last_len: usize,
}

impl Producer {
    fn send(&mut self, item: Item) {
        if let Item::Set {
            body: Some((body, _)),
            ..
        } = &item
        {
            self.batch_bytes += body.bytes.len();
        }
        self.batch.push(item);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_ITEMS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if self.closed || batch.is_empty() {
            return;
        }
        if self.tx.send((self.seq, batch)).is_err() {
            self.closed = true;
        }
        self.seq += 1;
    }
}

impl Handler for Producer {
    fn interchange_start(&mut self, header: &InterchangeHeader) {
        self.interchange = Arc::new(header.clone());
        self.interchange_index += 1;
        self.group_index = 0;
        if let Some(delimiters) = header.delimiters {
            self.delimiters = delimiters;
        }
    }

    fn group_start(&mut self, header: &GroupHeader) {
        self.group = Arc::new(header.clone());
        self.group_index += 1;
    }

    fn set_start(&mut self, header: &SetHeader) {
        self.body = sets::is_typed(&header.id).then(|| {
            self.pool
                .try_recv()
                .unwrap_or_else(|_| SetBody::with_capacity(self.last_len + self.last_len / 8))
        });
    }

    #[inline]
    fn segment(&mut self, segment: &Segment<'_>, _index: u32) {
        if let Some(body) = &mut self.body {
            body.push(segment);
        }
    }

    fn set_end(&mut self, report: &SetReport) {
        let body = self.body.take().map(|body| {
            self.last_len = body.bytes.len();
            (body, self.delimiters)
        });
        let position = Position {
            segment_id: None,
            ..report.position(self.interchange_index, Some(self.group_index))
        };
        let item = Item::Set {
            interchange: self.interchange.clone(),
            group: self.group.clone(),
            report: report.clone(),
            position,
            body,
        };
        self.send(item);
    }

    fn group_end(&mut self, report: &GroupReport) {
        let item = Item::GroupEnd {
            interchange: self.interchange.clone(),
            report: report.clone(),
        };
        self.send(item);
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        self.send(Item::InterchangeEnd(report.clone()));
    }
}

/// Allocates and frees one large block. With glibc's allocator this raises its thresholds (a
/// freed block above the mmap threshold lifts it, and the trim threshold to twice that), so the
/// documents of each batch — tens of KiB, built on one thread and freed on another — are no
/// longer given back to the system and faulted in again batch after batch. Elsewhere it is a
/// harmless allocation.
fn warm_allocator() {
    let block = std::hint::black_box(vec![1u8; 8 << 20]);
    drop(block);
}

/// Reads every set of any `Read` like [`read_stream`], typing sets on `workers` threads while
/// one thread reads: the handler still sees everything in input order, on the caller's thread.
/// Memory stays bounded (about 64 sets in flight).
pub fn read_stream_parallel<R: Read + Send>(
    input: R,
    handler: &mut impl TypedHandler,
    workers: usize,
) -> Result<Stats, std::io::Error> {
    warm_allocator();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<(u64, Vec<Item>)>(IN_FLIGHT);
        let (done_tx, done_rx) = sync_channel::<(u64, Vec<Done>)>(IN_FLIGHT);
        let (pool_tx, pool_rx) = sync_channel::<SetBody>(IN_FLIGHT * BATCH_ITEMS);
        let reader = scope.spawn(move || {
            let mut producer = Producer {
                tx: job_tx,
                pool: pool_rx,
                seq: 0,
                closed: false,
                batch: Vec::new(),
                batch_bytes: 0,
                interchange: Arc::default(),
                interchange_index: 0,
                group: Arc::default(),
                group_index: 0,
                delimiters: Delimiters::default(),
                body: None,
                last_len: 0,
            };
            let stats = walk_read(input, &mut producer);
            producer.flush();
            stats
        });
        let job_rx = Arc::new(Mutex::new(job_rx));
        // Documents the handler left go back to the worker that built them, so memory is freed
        // by the thread that allocated it (cross-thread frees made the allocator trim and
        // regrow its heaps).
        let mut leftovers = Vec::new();
        for worker in 0..workers.max(1) {
            let (jobs, done, pool) = (Arc::clone(&job_rx), done_tx.clone(), pool_tx.clone());
            let (leftover_tx, leftover_rx) = sync_channel::<Document>(IN_FLIGHT * BATCH_ITEMS);
            leftovers.push(leftover_tx);
            scope.spawn(move || {
                loop {
                    while let Ok(document) = leftover_rx.try_recv() {
                        drop(document);
                    }
                    let next = match jobs.lock() {
                        Ok(jobs) => jobs.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((seq, items)) = next else {
                        return;
                    };
                    let finished = items
                        .into_iter()
                        .map(|item| item.finish(worker, &pool))
                        .collect();
                    if done.send((seq, finished)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(pool_tx);
        // Put results back in input order; at most the in-flight sets wait here.
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        for (seq, done) in done_rx {
            waiting.insert(seq, done);
            while let Some(batch) = waiting.remove(&next) {
                next += 1;
                for done in batch {
                    match done {
                        Done::Set {
                            interchange,
                            group,
                            report,
                            document,
                            problems,
                            worker,
                        } => {
                            let mut read = SetRead {
                                interchange: &interchange,
                                group: &group,
                                report: &report,
                                document,
                                problems: &problems,
                            };
                            handler.set(&mut read);
                            if let Some(document) = read.document.take() {
                                // A full channel: this thread frees it after all.
                                let _ = leftovers[worker].try_send(document);
                            }
                        }
                        Done::GroupEnd {
                            interchange,
                            report,
                        } => handler.group_end(&interchange, &report),
                        Done::InterchangeEnd(report) => handler.interchange_end(&report),
                    }
                }
            }
        }
        match reader.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
