//! `imgtag-lambda`: the AWS Lambda function of the automated path. Thin by
//! design: configuration from the environment, JSON logs, and the
//! runtime-independent handler in `imgtag::lambda`.
//!
//! Runs invocations one at a time (`lambda_runtime::run`, not the
//! concurrent mode): the runtime then sets `_X_AMZN_TRACE_ID` for each
//! invocation, which the AWS SDK forwards so that Lambda's recursive-loop
//! detection keeps working.

use std::sync::Arc;

use anyhow::Context;
use imgtag::detection::DynDetector;
use imgtag::lambda::{
    AllowedBuckets, HandlerOptions, InvocationError, LambdaConfig, S3Buckets, handle_invocation,
};
use imgtag::storage::S3Options;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

struct State {
    buckets: S3Buckets,
    detector: DynDetector,
    opts: HandlerOptions,
}

fn init_tracing() {
    // One JSON object per line on stdout, which CloudWatch Logs stores and
    // Logs Insights parses; level from RUST_LOG (default info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

async fn cold_start() -> anyhow::Result<State> {
    let config = LambdaConfig::from_env().context("imgtag-lambda configuration")?;
    // Region, credentials and `AWS_ENDPOINT_URL(_S3)` come from the
    // environment through the SDK's default chain.
    let s3opts = S3Options {
        path_style: config.path_style,
        ..Default::default()
    };
    let s3 = imgtag::storage::s3::sdk_client(&s3opts).await;
    // One image at a time per invocation: one detector call in flight.
    // No retry inside the function: the detector's client has its SDK
    // retries off and the pipeline makes one attempt here (see
    // `LambdaConfig::tag_options`); Lambda's own retry is the only layer.
    let detector = imgtag::detection::build(config.detector, &s3opts, 1)
        .await
        .context("starting the detector")?;
    let detector = config.bound_detector(detector);
    let trusted = match &config.buckets {
        AllowedBuckets::Any => "*".to_string(),
        AllowedBuckets::Only(names) => names.join(","),
    };
    tracing::info!(
        detector = config.detector.as_str(),
        min_confidence = config.min_confidence,
        max_labels = config.max_labels,
        uploads_prefix = config.layout.uploads_prefix(),
        metadata_prefix = config.layout.metadata_prefix(),
        buckets = %trusted,
        max_pixels = config.max_pixels,
        "cold start"
    );
    Ok(State {
        // The bucket is the one each record names, if trusted; the role
        // has no ListBucket, see `WithoutListBucket`.
        buckets: S3Buckets::new(s3, &config.layout),
        detector,
        opts: config.handler_options(),
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let state = match cold_start().await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            // Fails the init phase: Lambda reports it and never runs a
            // function with a setting nobody asked for.
            tracing::error!(error = %format!("{e:#}"), "cold start failed");
            std::process::exit(1);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        async move {
            // Set by the runtime for this invocation (sequential mode); the
            // SDK forwards it to S3 and Rekognition for loop detection.
            let trace_env = std::env::var("_X_AMZN_TRACE_ID").unwrap_or_default();
            tracing::info!(
                request_id = %event.context.request_id,
                trace_id_env = %trace_env,
                "invocation"
            );
            handle_invocation(event.payload, &state.buckets, &state.detector, &state.opts)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "invocation failed");
                    let error_type = match e {
                        InvocationError::Event(_) => "imgtag.BadEvent",
                        InvocationError::Incomplete { .. } => "imgtag.Incomplete",
                    };
                    Diagnostic {
                        error_type: error_type.into(),
                        error_message: e.to_string(),
                    }
                })
        }
    }))
    .await
}
