//! `Session`: M independent sequences decoding on an [`Engine`]: own positions and KV caches,
//! all buffers allocated once, each step replayed from a CUDA graph with positions and
//! lengths in device memory; only the next token ids (4 bytes per sequence) come back,
//! or the logits when asked.

use crate::plan::{Buffer, Launch};

use super::device::Graph;
use super::engine::Engine;
use super::error::RuntimeError;
use super::kernel::{KernelArg, LoadedKernel};
use super::workspace::SessionMemory;

/// Which memory holds a sequence's last step (and its logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Batch,
    Single,
}

/// One captured (or directly launched) step: kernels with resolved arguments.
struct Step<'e> {
    launches: Vec<(&'e LoadedKernel, Vec<KernelArg>)>,
    graph: Option<Graph>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("launches", &self.launches.len())
            .field("graph", &self.graph.is_some())
            .finish()
    }
}

/// M sequences decoding together.
#[derive(Debug)]
pub struct Session<'e> {
    engine: &'e Engine,
    m: u32,
    /// Workspace of the batched step (of the single step when m = 1) and every KV cache.
    batch: SessionMemory,
    /// Workspace of single steps of one sequence inside a batch (m > 1): prefill of prompts
    /// of unequal lengths, teacher forcing. Its KV caches are unused (steps bind the batch's).
    single: Option<SessionMemory>,
    positions: Vec<u32>,
    last: Vec<Option<Last>>,
    batch_step: Option<Step<'e>>,
    single_steps: Vec<Option<Step<'e>>>,
}

impl<'e> Session<'e> {
    /// A session of `m` sequences (1..=batch_max), all at position 0.
    pub fn new(engine: &'e Engine, m: u32) -> Result<Session<'e>, RuntimeError> {
        let batch_max = engine.options().batch_max;
        if m == 0 || m > batch_max {
            return Err(RuntimeError::Session(format!(
                "a session of {m} sequences: the engine was built for 1..={batch_max}"
            )));
        }
        let plan = &engine.set.plan;
        let layers = engine.set.model.dims.layers;
        let single_bytes = if m > 1 {
            SessionMemory::bytes(plan, 0, 1)
        } else {
            0
        };
        engine.device.require_free(
            &format!("a session of {m} sequences"),
            &[
                (
                    "KV caches + workspace",
                    SessionMemory::bytes(plan, layers, m),
                ),
                ("single-step workspace", single_bytes),
            ],
        )?;
        let batch = SessionMemory::new(&engine.device, plan, layers, m)?;
        let single = if m > 1 {
            Some(SessionMemory::new(&engine.device, plan, 0, 1)?)
        } else {
            None
        };
        Ok(Session {
            engine,
            m,
            batch,
            single,
            positions: vec![0; m as usize],
            last: vec![None; m as usize],
            batch_step: None,
            single_steps: (0..m).map(|_| None).collect(),
        })
    }

    /// Number of sequences.
    pub fn batch(&self) -> u32 {
        self.m
    }

    /// Position the next token of each sequence goes to (= tokens seen so far).
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Continues each sequence from position `positions[s]`, keeping what its KV cache holds
    /// below it (rewinding a sequence to a shared prefix, or benchmarking at a context
    /// length without decoding up to it).
    pub fn set_positions(&mut self, positions: &[u32]) -> Result<(), RuntimeError> {
        if positions.len() != self.m as usize {
            return Err(RuntimeError::Session(format!(
                "{} positions for {} sequences",
                positions.len(),
                self.m
            )));
        }
        for (s, &p) in positions.iter().enumerate() {
            if p >= self.max_context() {
                return Err(RuntimeError::ContextFull {
                    sequence: s,
                    position: p,
                    max_context: self.max_context(),
                });
            }
        }
        self.positions.copy_from_slice(positions);
        self.last.iter_mut().for_each(|l| *l = None);
        Ok(())
    }

    /// Starts every sequence over (the KV caches are overwritten as positions advance).
    pub fn reset(&mut self) {
        self.positions.iter_mut().for_each(|p| *p = 0);
        self.last.iter_mut().for_each(|l| *l = None);
    }

    fn max_context(&self) -> u32 {
        self.engine.set.plan.max_context
    }

    fn check_room(&self, seq: usize) -> Result<(), RuntimeError> {
        let p = self.positions[seq];
        if p >= self.max_context() {
            return Err(RuntimeError::ContextFull {
                sequence: seq,
                position: p,
                max_context: self.max_context(),
            });
        }
        Ok(())
    }

    /// Feeds `tokens[s]` to every sequence `s` at its position; returns each sequence's
    /// greedy next token. All sequences advance by one.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<u32>, RuntimeError> {
        if tokens.len() != self.m as usize {
            return Err(RuntimeError::Session(format!(
                "step of {} tokens in a session of {} sequences",
                tokens.len(),
                self.m
            )));
        }
        for s in 0..tokens.len() {
            self.check_room(s)?;
        }
        if self.batch_step.is_none() {
            let launches = self
                .engine
                .set
                .plan
                .step_for(self.m)
                .map_err(|e| RuntimeError::KernelSet(e.to_string()))?;
            self.batch_step = Some(self.build(&launches, &self.batch, 0)?);
        }
        let inputs = step_inputs(tokens, &self.positions);
        self.batch.workspace.write_at(0, &inputs)?;
        self.run(self.batch_step.as_ref())?;
        let out = self.batch.workspace.read_at(
            self.batch.layout.offset(Buffer::Token) as usize,
            4 * self.m as usize,
        )?;
        for s in 0..self.m as usize {
            self.positions[s] += 1;
            self.last[s] = Some(Last::Batch);
        }
        Ok(u32s(&out))
    }

    /// Feeds `token` to sequence `seq` alone (the single-vector kernels, on that sequence's
    /// KV caches); returns its greedy next token.
    pub fn step_one(&mut self, seq: usize, token: u32) -> Result<u32, RuntimeError> {
        if seq >= self.m as usize {
            return Err(RuntimeError::Session(format!(
                "sequence {seq} of a session of {}",
                self.m
            )));
        }
        if self.m == 1 {
            return Ok(self.step(&[token])?[0]);
        }
        self.check_room(seq)?;
        if self.single_steps[seq].is_none() {
            let mem = self
                .single
                .as_ref()
                .ok_or_else(|| RuntimeError::Session("no single-step workspace".into()))?;
            let launches = self.engine.set.plan.step.clone();
            let step = self.build(&launches, mem, seq as u32)?;
            self.single_steps[seq] = Some(step);
        }
        let inputs = step_inputs(&[token], &self.positions[seq..seq + 1]);
        let mem = self
            .single
            .as_mut()
            .ok_or_else(|| RuntimeError::Session("no single-step workspace".into()))?;
        mem.workspace.write_at(0, &inputs)?;
        self.run(self.single_steps[seq].as_ref())?;
        let mem = self
            .single
            .as_ref()
            .ok_or_else(|| RuntimeError::Session("no single-step workspace".into()))?;
        let out = mem
            .workspace
            .read_at(mem.layout.offset(Buffer::Token) as usize, 4)?;
        // The batch step keeps its own logits; this sequence's latest are in `single`.
        for (s, l) in self.last.iter_mut().enumerate() {
            if s == seq {
                *l = Some(Last::Single);
            } else if *l == Some(Last::Single) {
                *l = None;
            }
        }
        self.positions[seq] += 1;
        Ok(u32s(&out)[0])
    }

    /// Feeds each sequence its prompt, token by token: through the batched kernels while all
    /// prompts have tokens left, then sequence by sequence. Returns each sequence's greedy
    /// next token after its prompt.
    pub fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<u32>, RuntimeError> {
        if prompts.len() != self.m as usize || prompts.iter().any(|p| p.is_empty()) {
            return Err(RuntimeError::Session(format!(
                "prefill needs one non-empty prompt per sequence ({} sequences)",
                self.m
            )));
        }
        let common = prompts.iter().map(|p| p.len()).min().unwrap_or(0);
        let mut next = vec![0u32; self.m as usize];
        for i in 0..common {
            let tokens: Vec<u32> = prompts.iter().map(|p| p[i]).collect();
            next = self.step(&tokens)?;
        }
        for (s, p) in prompts.iter().enumerate() {
            for &t in &p[common..] {
                next[s] = self.step_one(s, t)?;
            }
        }
        Ok(next)
    }

    /// Greedy decoding: prefill, then `max_new` tokens per sequence (a sequence stops after
    /// emitting `stop`, while the others go on). Returns the new tokens of each sequence.
    pub fn generate(
        &mut self,
        prompts: &[&[u32]],
        max_new: usize,
        stop: Option<u32>,
    ) -> Result<Vec<Vec<u32>>, RuntimeError> {
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); self.m as usize];
        if max_new == 0 {
            return Ok(out);
        }
        let mut next = self.prefill(prompts)?;
        let mut done = vec![false; self.m as usize];
        loop {
            for s in 0..self.m as usize {
                if !done[s] {
                    out[s].push(next[s]);
                    done[s] = out[s].len() >= max_new || Some(next[s]) == stop;
                }
            }
            if done.iter().all(|d| *d) {
                return Ok(out);
            }
            // Finished sequences keep stepping on their last token; their output is ignored.
            next = self.step(&next)?;
        }
    }

    /// The whole workspace buffer `buffer` of the batch (every sequence's regions, as the
    /// last batched step left them; see the manifest's batched layout).
    pub fn read_buffer(&self, buffer: Buffer) -> Result<Vec<u8>, RuntimeError> {
        let (offset, bytes) = self
            .batch
            .layout
            .regions
            .get(&buffer)
            .copied()
            .ok_or_else(|| RuntimeError::Session(format!("no buffer {}", buffer.name())))?;
        self.batch
            .workspace
            .read_at(offset as usize, bytes as usize)
    }

    /// The logits of sequence `seq`'s last step (`vocab` values).
    pub fn logits(&self, seq: usize) -> Result<Vec<f32>, RuntimeError> {
        let vocab = self.engine.set.model.dims.vocab as usize;
        let (mem, index) = match self.last.get(seq).copied().flatten() {
            Some(Last::Batch) => (&self.batch, seq),
            Some(Last::Single) => (self.single.as_ref().unwrap_or(&self.batch), 0),
            None => {
                return Err(RuntimeError::Session(format!(
                    "sequence {seq} has no step to read logits from"
                )))
            }
        };
        let at = mem.layout.offset(Buffer::Logits) as usize + index * vocab * 4;
        let bytes = mem.workspace.read_at(at, vocab * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Resolves `launches` on workspace `ws` and the batch's KV caches of sequence `seq`
    /// (0 for the batched step, whose kernels offset each sequence themselves), and
    /// captures them as a graph.
    fn build(
        &self,
        launches: &[Launch],
        ws: &SessionMemory,
        seq: u32,
    ) -> Result<Step<'e>, RuntimeError> {
        let engine = self.engine;
        let resolved = launches
            .iter()
            .map(|l| {
                Ok((
                    engine.kernel(&l.kernel)?,
                    engine.resolve(l, ws, &self.batch, seq)?,
                ))
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let graph = if engine.options().graphs {
            Some(engine.device.capture(|| launch_all(&resolved))?)
        } else {
            None
        };
        Ok(Step {
            launches: resolved,
            graph,
        })
    }

    fn run(&self, step: Option<&Step<'e>>) -> Result<(), RuntimeError> {
        let step = step.ok_or_else(|| RuntimeError::Session("step not built".into()))?;
        match &step.graph {
            Some(g) => g.replay(),
            None => launch_all(&step.launches),
        }
    }
}

fn launch_all(launches: &[(&LoadedKernel, Vec<KernelArg>)]) -> Result<(), RuntimeError> {
    for (k, args) in launches {
        k.launch(args, |_| 0)?;
    }
    Ok(())
}

/// `token[m]`, `pos[m]`, `seq_len[m]` as the workspace packs them (u32 little endian).
fn step_inputs(tokens: &[u32], positions: &[u32]) -> Vec<u8> {
    tokens
        .iter()
        .copied()
        .chain(positions.iter().copied())
        .chain(positions.iter().map(|p| p + 1))
        .flat_map(u32::to_le_bytes)
        .collect()
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
