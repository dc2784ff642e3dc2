//! The batched engine: sequences stepped together give the bits each gives alone (and alone the
//! bits of a session), whoever shares their steps, however their prompts are cut into pieces,
//! and when their prompts take blocks other sequences computed; the pool's blocks are shared,
//! copied before a shared one is written, returned when sequences leave, and a sequence the
//! pool cannot hold fails alone.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use llmrt::engine::PoolStats;
use llmrt::quant::Simd;
use llmrt::{Engine, EngineParams, Error, Model, SeqId, Session, SessionParams};

fn load(name: &str) -> Option<Arc<Model>> {
    common::models::load(name)
}

/// Prompts of different lengths and texts (the first `n` of them).
fn prompts(model: &Model, n: usize) -> Vec<Vec<u32>> {
    let texts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "1, 1, 2, 3, 5, 8,",
        "Water boils at",
        "The three laws of thermodynamics are: first, energy is conserved; second,",
        "Q: What is the largest planet in the solar system?\nA:",
        "Ich bin ein",
    ];
    texts
        .iter()
        .cycle()
        .take(n)
        .map(|t| model.tokenizer().encode(t, true, false).expect("tokens"))
        .collect()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Every logit of every step of one sequence, as bits.
type Trace = Vec<Vec<u32>>;

fn bits(logits: &[f32]) -> Vec<u32> {
    logits.iter().map(|l| l.to_bits()).collect()
}

fn params() -> EngineParams {
    EngineParams {
        n_ctx: 2048,
        pool_positions: 8 * 2048,
        n_threads: 2,
        ..Default::default()
    }
}

/// Greedy decoding of `prompts` in one engine, prompt `i` fed at step `join[i]`, `steps`
/// tokens each: every sequence's logits after its prompt and after each generated token.
fn run_together(
    model: &Arc<Model>,
    prompts: &[Vec<u32>],
    join: &[usize],
    steps: usize,
    params: &EngineParams,
    simd: Simd,
) -> (Vec<Trace>, PoolStats) {
    let mut engine = Engine::new(model.clone(), params).expect("engine");
    engine.set_simd(simd).expect("level");
    let start = engine.pool_stats();
    let mut ids: Vec<Option<SeqId>> = vec![None; prompts.len()];
    let mut traces: Vec<Trace> = vec![Vec::new(); prompts.len()];
    let mut step = 0;
    loop {
        for (i, p) in prompts.iter().enumerate() {
            if join[i] == step && ids[i].is_none() {
                let id = engine.add();
                engine.feed(id, p).expect("feed");
                ids[i] = Some(id);
            }
        }
        let done = ids.iter().all(Option::is_some) && !engine.has_work();
        if done {
            break;
        }
        let report = engine.step().expect("step");
        assert!(report.failed.is_empty(), "{report:?}");
        for id in report.ready {
            let i = ids.iter().position(|&x| x == Some(id)).expect("known");
            let logits = engine.logits(id).expect("seq").expect("ready").to_vec();
            traces[i].push(bits(&logits));
            if traces[i].len() <= steps {
                engine.feed(id, &[argmax(&logits)]).expect("feed");
            }
        }
        step += 1;
        assert!(step < 100_000, "the engine does not finish");
    }
    let end = engine.pool_stats();
    for id in ids.into_iter().flatten() {
        engine.remove(id).expect("remove");
    }
    // Every block returned (published ones stay cached for later prompts, counted as free).
    let after = engine.pool_stats();
    assert_eq!((after.free, after.shared), (start.free, 0), "{after:?}");
    (traces, end)
}

/// The same decoding with a session.
fn run_session(model: &Arc<Model>, prompt: &[u32], steps: usize, simd: Simd) -> Trace {
    let mut s = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 2048,
            n_threads: 2,
            ..Default::default()
        },
    )
    .expect("session");
    s.set_simd(simd).expect("level");
    let mut trace = vec![bits(s.eval(prompt).expect("eval"))];
    for _ in 0..steps {
        let next = argmax(s.logits());
        trace.push(bits(s.eval(&[next]).expect("eval")));
    }
    trace
}

fn assert_same(what: &str, got: &[Trace], want: &[Trace]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: sequence {i} steps");
        for (step, (g, w)) in g.iter().zip(w).enumerate() {
            let differ = g.iter().zip(w).filter(|(a, b)| a != b).count();
            assert_eq!(
                differ, 0,
                "{what}: sequence {i} step {step}: {differ} logits differ"
            );
        }
    }
}

/// Eight sequences decoded together for 64 steps, with different prompts and with one prompt,
/// all from the first step and joining at different steps, give each sequence the bits it has
/// alone in an engine, and alone in an engine those of a session.
fn check_batch_invariance(name: &str, levels: &[Simd], steps: usize) {
    let Some(model) = load(name) else { return };
    for &simd in levels.iter().filter(|s| s.is_supported()) {
        let different = prompts(&model, 8);
        let same = vec![different[2].clone(); 8];
        let alone = |p: &Vec<u32>| {
            run_together(
                &model,
                std::slice::from_ref(p),
                &[0],
                steps,
                &params(),
                simd,
            )
            .0
            .remove(0)
        };
        let alone_different: Vec<Trace> = different.iter().map(alone).collect();
        let session = run_session(&model, &different[0], steps, simd);
        assert_same(
            &format!("{name} {simd:?} engine alone vs session"),
            &alone_different[..1],
            &[session],
        );
        let (together, _) = run_together(&model, &different, &[0; 8], steps, &params(), simd);
        assert_same(
            &format!("{name} {simd:?} 8 different"),
            &together,
            &alone_different,
        );
        let join = [0, 1, 2, 3, 5, 8, 13, 21];
        let (joined, _) = run_together(&model, &different, &join, steps, &params(), simd);
        assert_same(
            &format!("{name} {simd:?} joining"),
            &joined,
            &alone_different,
        );
        let alone_same = vec![alone_different[2].clone(); 8];
        let (together, _) = run_together(&model, &same, &[0; 8], steps, &params(), simd);
        assert_same(&format!("{name} {simd:?} 8 same"), &together, &alone_same);
    }
}

#[test]
fn smollm2_q8_0_batch_invariance() {
    check_batch_invariance("smollm2-135m-instruct-q8_0.gguf", &[Simd::detect()], 64);
}

/// The other levels, fewer steps (the scalar kernels are slow).
#[test]
fn smollm2_q8_0_batch_invariance_at_every_level() {
    let others: Vec<Simd> = Simd::all_supported()
        .into_iter()
        .filter(|&s| s != Simd::detect())
        .collect();
    check_batch_invariance("smollm2-135m-instruct-q8_0.gguf", &others, 8);
}

#[test]
fn smollm2_q4_0_batch_invariance() {
    check_batch_invariance("smollm2-135m-instruct-q4_0.gguf", &[Simd::detect()], 64);
}

#[test]
fn qwen2_5_q4_k_m_batch_invariance() {
    check_batch_invariance(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        &[Simd::detect()],
        24,
    );
}

#[test]
fn gemma3_q4_k_m_batch_invariance() {
    check_batch_invariance("gemma-3-270m-q4_k_m.gguf", &[Simd::detect()], 24);
}

#[test]
fn synthetic_moe_and_float_batch_invariance() {
    for name in [
        "synthetic/qwen3moe-kmix.gguf",
        "synthetic/mixtral-q4_0.gguf",
        "synthetic/llama3-f16.gguf",
        "synthetic/phi3-bf16.gguf",
        "synthetic/gemma2-kmix.gguf",
    ] {
        check_batch_invariance(name, &[Simd::detect()], 16);
    }
}

/// A token sequence of at least `n` tokens of varied text.
fn long_tokens(model: &Model, n: usize) -> Vec<u32> {
    let text = "In the beginning the universe was created. This has made a lot of people very \
                angry and been widely regarded as a bad move. Many were increasingly of the \
                opinion that they had all made a big mistake in coming down from the trees. ";
    let mut tokens = model.tokenizer().encode(text, true, false).expect("tokens");
    let more = model
        .tokenizer()
        .encode(text, false, false)
        .expect("tokens");
    while tokens.len() < n {
        tokens.extend_from_slice(&more);
    }
    tokens.truncate(n);
    tokens
}

/// Eight prompts behind one 1,000-token prefix hold the prefix's blocks once (all but the one
/// the prefix shares with the prompts' own tokens), and give the bits of the unshared run; the
/// prompts are evaluated in pieces of a 96-token step budget, which changes nothing either.
#[test]
fn prompts_behind_one_prefix_share_its_blocks() {
    for name in [
        "smollm2-135m-instruct-q4_0.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ] {
        let Some(model) = load(name) else { return };
        let prefix = long_tokens(&model, 1000);
        let prompts: Vec<Vec<u32>> = prompts(&model, 8)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut t = prefix.clone();
                // Each suffix long enough that the prompt's second batch is a whole one, and
                // of its own length.
                while t.len() < 1024 + 4 * i {
                    t.extend_from_slice(&p[1..]);
                }
                t
            })
            .collect();
        let simd = Simd::detect();
        let steps = 8;
        let unshared_params = EngineParams {
            no_prefix_sharing: true,
            ..params()
        };
        let (unshared, stats) =
            run_together(&model, &prompts, &[0; 8], steps, &unshared_params, simd);
        assert_eq!(
            stats.shared, 0,
            "{name}: nothing shared when sharing is off"
        );
        let pieces = EngineParams {
            step_tokens: 96,
            ..params()
        };
        // The larger model only in pieces (the costlier case to get right).
        let configs = if name.starts_with("qwen") {
            vec![pieces]
        } else {
            vec![params(), pieces]
        };
        for p in configs {
            let (shared, stats) = run_together(&model, &prompts, &[0; 8], steps, &p, simd);
            assert_same(&format!("{name} shared prefix"), &shared, &unshared);
            // The prefix's whole blocks: 1000 / 16 = 62, the 63rd holding suffix tokens too.
            assert_eq!(stats.shared, 1000 / 16, "{name}: {stats:?}");
            let held = stats.total - stats.free;
            let own: usize = prompts
                .iter()
                .map(|p| (p.len() + steps).div_ceil(16) - 1000 / 16)
                .sum();
            assert_eq!(held, 1000 / 16 + own, "{name}: {stats:?}");
        }
    }
}

/// A pool too small for every prompt: the sequences it cannot hold fail with a clear error,
/// the others go on to the bits they have alone, and every block comes back.
#[test]
fn a_full_pool_fails_only_the_sequence_that_needs_more() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let simd = Simd::detect();
    let prompt = long_tokens(&model, 100);
    let small = EngineParams {
        pool_positions: 16 * 16,
        ..params()
    };
    let mut engine = Engine::new(model.clone(), &small).expect("engine");
    let ids: Vec<SeqId> = (0..3).map(|_| engine.add()).collect();
    for (k, &id) in ids.iter().enumerate() {
        // Distinct prompts: nothing to share.
        let mut p = prompt.clone();
        p[1] = 100 + k as u32;
        engine.feed(id, &p).expect("feed");
    }
    let mut failed = Vec::new();
    while engine.has_work() {
        failed.extend(engine.step().expect("step").failed);
    }
    assert_eq!(
        failed,
        vec![ids[2]],
        "the third needs blocks the pool does not have"
    );
    let err = engine.error(ids[2]).expect("seq").expect("failed");
    assert!(matches!(err, Error::KvPoolFull { .. }), "{err}");
    assert!(err.to_string().contains("KV pool is full"), "{err}");
    assert!(
        engine.feed(ids[2], &[1]).is_err(),
        "a failed sequence takes no tokens"
    );
    for (k, &id) in ids[..2].iter().enumerate() {
        let mut p = prompt.clone();
        p[1] = 100 + k as u32;
        let want = run_session(&model, &p, 0, simd);
        let got = bits(engine.logits(id).expect("seq").expect("ready"));
        assert_eq!(got, want[0], "sequence {k}");
    }
    for id in ids {
        engine.remove(id).expect("remove");
    }
    let stats = engine.pool_stats();
    assert_eq!(stats.free, stats.total);
}

/// A fork shares its parent's blocks, the partly filled last one included, and each gets its
/// own copy before writing into it: both then decode what they decode alone. Removing a
/// sequence between steps leaves the others' bits alone.
#[test]
fn forks_copy_a_shared_block_before_writing_and_removal_leaves_others_alone() {
    let Some(model) = load("smollm2-135m-instruct-q4_0.gguf") else {
        return;
    };
    let simd = Simd::detect();
    let p = prompts(&model, 3);
    let mut engine = Engine::new(model.clone(), &params()).expect("engine");
    let a = engine.add();
    let other = engine.add();
    let gone = engine.add();
    engine.feed(a, &p[0]).expect("feed");
    engine.feed(other, &p[1]).expect("feed");
    engine.feed(gone, &p[2]).expect("feed");
    engine.run().expect("run");
    let b = engine.fork(a).expect("fork");
    assert!(engine.pool_stats().shared > 0, "the fork shares the blocks");
    let (ta, tb) = (argmax(engine.logits(a).unwrap().unwrap()), 17u32);
    engine.feed(a, &[ta]).expect("feed");
    engine.feed(b, &[tb]).expect("feed");
    let to = argmax(engine.logits(other).unwrap().unwrap());
    engine.feed(other, &[to]).expect("feed");
    engine.remove(gone).expect("remove");
    engine.run().expect("run");
    let mut want: HashMap<SeqId, Vec<u32>> = HashMap::new();
    want.insert(a, [p[0].clone(), vec![ta]].concat());
    want.insert(b, [p[0].clone(), vec![tb]].concat());
    want.insert(other, [p[1].clone(), vec![to]].concat());
    for (id, tokens) in want {
        assert_eq!(engine.tokens(id).unwrap(), &tokens[..]);
        // Alone: the prompt, then the one token.
        let mut s = Session::new(
            model.clone(),
            &SessionParams {
                n_ctx: 2048,
                ..Default::default()
            },
        )
        .unwrap();
        s.set_simd(simd).unwrap();
        s.eval(&tokens[..tokens.len() - 1]).unwrap();
        let alone = bits(s.eval(&tokens[tokens.len() - 1..]).unwrap());
        assert_eq!(bits(engine.logits(id).unwrap().unwrap()), alone, "{id:?}");
    }
    assert!(engine.remove(gone).is_err(), "removed once");
}

/// Greedy decoding of one prompt in `engine`, alone: its trace, and how many positions it took
/// from blocks computed before.
fn decode_alone(engine: &mut Engine, prompt: &[u32], steps: usize) -> (Trace, usize) {
    let id = engine.add();
    engine.feed(id, prompt).expect("feeds");
    let mut trace = Vec::new();
    loop {
        engine.run().expect("runs");
        let logits = engine
            .logits(id)
            .expect("sequence")
            .expect("logits")
            .to_vec();
        trace.push(bits(&logits));
        if trace.len() > steps {
            break;
        }
        engine.feed(id, &[argmax(&logits)]).expect("feeds");
    }
    let reused = engine.reused(id).expect("sequence");
    engine.remove(id).expect("removes");
    (trace, reused)
}

/// A finished sequence's prefix stays in the pool for later prompts (the bits they would compute,
/// taken instead), until its blocks are needed: then the oldest go, with every block keyed after
/// them, and a later prompt computes what it can no longer take, to the same bits.
#[test]
fn finished_prefixes_stay_cached_until_their_blocks_are_needed() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let simd = Simd::detect();
    let prompt = long_tokens(&model, 1100);
    let mut other = long_tokens(&model, 1100);
    other[1] = 100;
    let mut engine = Engine::new(
        model.clone(),
        &EngineParams {
            pool_positions: 1200,
            ..params()
        },
    )
    .expect("engine");
    engine.set_simd(simd).expect("level");
    let start = engine.pool_stats();
    let (first, reused) = decode_alone(&mut engine, &prompt, 4);
    assert_eq!(reused, 0);
    let after = engine.pool_stats();
    // The whole blocks of the prompt's batches (512, 512 and 76 tokens) were published: 68
    // blocks stay cached, and count as free.
    assert_eq!((after.free, after.cached), (start.free, 68), "{after:?}");
    let (again, reused) = decode_alone(&mut engine, &prompt, 4);
    assert_eq!(reused, 68 * 16, "the cached prefix is taken");
    assert_same("from the cache", &[again], std::slice::from_ref(&first));
    // Another prompt needs the pool: the cached blocks are taken for it, oldest first.
    let (_, reused) = decode_alone(&mut engine, &other, 2);
    assert_eq!(reused, 0, "nothing of another prompt is cached");
    let (third, reused) = decode_alone(&mut engine, &prompt, 4);
    assert!(
        reused < 68 * 16,
        "the first prompt's blocks were reused for the other"
    );
    assert_same("after eviction", &[third], &[first]);
    let end = engine.pool_stats();
    assert_eq!(end.free, start.free, "{end:?}");
}
