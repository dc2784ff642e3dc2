//! Embeddings against llama.cpp's (`scripts/make-embedding-reference.py`): the final hidden
//! states pooled by mean and by last token, normalised, for texts of several lengths.

mod common;

use std::sync::Arc;

use llmrt::embed::{embed, Pooling};
use llmrt::{Model, ModelParams, Session, SessionParams};

#[test]
fn embeddings_equal_llama_cpps_for_mean_and_last_pooling() {
    let name = "smollm2-135m-instruct-q8_0";
    let Some(path) = common::models::model_path(&format!("{name}.gguf")) else {
        return;
    };
    let model = Arc::new(Model::load(&path, &ModelParams::default()).expect("model loads"));
    assert_eq!(
        Pooling::of_file(model.gguf()).expect("pooling"),
        Pooling::Mean
    );
    let reference = common::models::reference_json(&format!("embeddings/{name}.json"));
    let mut session = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 512,
            n_threads: 2,
            ..SessionParams::default()
        },
    )
    .expect("session");
    for (key, pooling) in [("mean", Pooling::Mean), ("last", Pooling::Last)] {
        let rows = reference["pooling"][key].as_array().expect("rows");
        assert!(rows.len() >= 5);
        for row in rows {
            let text = row["text"].as_str().expect("text");
            let tokens = model.tokenizer().encode(text, true, false).expect("tokens");
            let want_tokens: Vec<u32> = row["tokens"]
                .as_array()
                .expect("tokens")
                .iter()
                .map(|t| t.as_u64().expect("id") as u32)
                .collect();
            assert_eq!(tokens, want_tokens, "{text}");
            let got = embed(&mut session, &tokens, pooling).expect("embeds");
            let want: Vec<f32> = row["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(got.len(), want.len());
            // Last-token pooling takes one state: the same bits as llama.cpp's up to the final
            // normalisation. The mean sums in another order than llama.cpp's float32 matrix
            // product: a few ulps (1e-6 is about 16 at these magnitudes).
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{key} {text:?}: differs by {worst}");
            let norm: f32 = got.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
    // The session is left empty, ready for anything else.
    assert!(session.tokens().is_empty());
}
