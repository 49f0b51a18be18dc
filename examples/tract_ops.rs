//! Where tract spends a model's run, by operator: the numbers behind
//! docs/detectors.md's "Levers". Builds the optimised plan the product
//! builds (a fixed input shape), runs it on a fixed pseudo-random input,
//! and prints the mean time per run of each operator kind (or of each node
//! with `--nodes`), the three warm-up runs left out. `--transform NAME`
//! applies one of tract's model transforms (e.g. `conv_nhwc`) to the
//! decluttered model first, to measure it as a lever; `--lean` declutters
//! as the product does the detector (without the passes
//! `engine::lean_optimizer` leaves out). It prints each load phase's time
//! too.
//!
//! `cargo run --release --example tract_ops -- assets/model/yolox_nano.onnx 1,3,320,416 [runs] [--nodes] [--lean] [--transform NAME]`

use std::collections::HashMap;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};

const WARM_UP: usize = 3;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let by_node = args.iter().any(|a| a == "--nodes");
    let lean = args.iter().any(|a| a == "--lean");
    let transform = args
        .iter()
        .position(|a| a == "--transform")
        .and_then(|i| args.get(i + 1).cloned());
    let args: Vec<&String> = args
        .iter()
        .filter(|a| {
            !["--nodes", "--lean", "--transform"].contains(&a.as_str())
                && Some(*a) != transform.as_ref()
        })
        .collect();
    let (Some(path), Some(shape)) = (args.first(), args.get(1)) else {
        return Err(anyhow::anyhow!(
            "usage: tract_ops MODEL.onnx N,C,H,W [runs] [--nodes] [--lean] [--transform NAME]"
        ));
    };
    let shape: Vec<usize> = shape.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let runs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(30);
    // Each phase of making the plan, timed: they are the engine's load.
    let mut phase = Instant::now();
    let mut lap = |name: &str| {
        eprintln!("load: {name} {:.1} ms", phase.elapsed().as_secs_f64() * 1e3);
        phase = Instant::now();
    };
    let bytes = std::fs::read(path)?;
    let parsed = tract_onnx::onnx().model_for_read(&mut bytes.as_slice())?;
    lap("parse");
    let typed = parsed
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?;
    lap("into_typed");
    let mut model = typed;
    if lean {
        imgtag::detection::engine::lean_optimizer().optimize(&mut model)?;
    } else {
        model.declutter()?;
    }
    lap("declutter");
    if let Some(name) = &transform {
        let Some(t) = tract_onnx::tract_core::transform::get_transform(name)? else {
            return Err(anyhow::anyhow!("tract has no transform {name}"));
        };
        model.transform(&*t)?;
    }
    let plan = if lean && transform.is_none() {
        // As the product's detector: lean again, then tract's codegen.
        imgtag::detection::engine::lean_optimizer().optimize(&mut model)?;
        model.optimize()?;
        model.into_runnable()?
    } else {
        model.into_optimized()?.into_runnable()?
    };
    lap("optimise");
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len).map(|i| (i * 7919 % 255) as f32 / 255.0).collect();
    let input = Tensor::from_shape(&shape, &data)?;

    let mut per_op: HashMap<String, (f64, usize)> = HashMap::new();
    let mut total = 0.0;
    for run in 0..runs + WARM_UP {
        let mut state = SimpleState::new(&plan)?;
        let mut times = Vec::new();
        let start = Instant::now();
        state.run_plan_with_eval(tvec!(input.clone().into()), |s, op_state, node, inputs| {
            let t = Instant::now();
            let out = eval(s, op_state, node, inputs);
            let key = if by_node {
                format!("{} {}", node.op().name(), node.name)
            } else {
                node.op().name().to_string()
            };
            times.push((key, t.elapsed().as_secs_f64()));
            out
        })?;
        if run >= WARM_UP {
            total += start.elapsed().as_secs_f64();
            for (key, secs) in times {
                let entry = per_op.entry(key).or_default();
                entry.0 += secs;
                entry.1 += 1;
            }
        }
    }
    let runs = runs as f64;
    println!("{path} on {shape:?}: {:.2} ms a run", total / runs * 1e3);
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    for (key, (secs, count)) in rows.iter().take(25) {
        let nodes = (*count as f64 / runs).round();
        println!("{:>8.2} ms {nodes:>5} nodes  {key}", secs / runs * 1e3);
    }
    Ok(())
}
