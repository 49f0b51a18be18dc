//! The deployment files in `deploy/`: the IAM policies are valid JSON and
//! grant exactly what docs/deploy.md says, and the SAM template agrees with the
//! handler (environment variable names, build output path). `cfn-lint`
//! checks the template's CloudFormation syntax in CI (`.ci/run`).

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("not a string or list: {other}"),
    }
}

/// (actions, resources) of each Allow statement; no Deny, no NotAction.
fn grants(policy: &Value) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    assert_eq!(policy["Version"], "2012-10-17");
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
            (
                list(&s["Action"]).into_iter().collect(),
                list(&s["Resource"]).into_iter().collect(),
            )
        })
        .collect()
}

/// Every (action, resource) pair a policy allows.
fn pairs(policy: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (actions, resources) in grants(policy) {
        for a in &actions {
            assert!(!a.contains('*'), "wildcard action {a}");
            for r in &resources {
                out.insert((a.clone(), r.clone()));
            }
        }
    }
    out
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

#[test]
fn operator_policy_is_least_privilege() {
    let p = json("deploy/operator-policy.json");
    assert_eq!(
        pairs(&p),
        set(&[
            ("s3:ListBucket", "arn:aws:s3:::my-imgtag-bucket"),
            ("s3:GetObject", "arn:aws:s3:::my-imgtag-bucket/uploads/*"),
            ("s3:GetObject", "arn:aws:s3:::my-imgtag-bucket/metadata/*"),
            ("s3:PutObject", "arn:aws:s3:::my-imgtag-bucket/metadata/*"),
            // Claims only (src/claim.rs), never a document.
            (
                "s3:DeleteObject",
                "arn:aws:s3:::my-imgtag-bucket/metadata/*.lock"
            ),
            ("rekognition:DetectLabels", "*"),
        ])
    );
}

#[test]
fn backfill_policies_are_least_privilege() {
    let role = json("deploy/batch-operations-role.json");
    let trust = &role["TrustPolicy"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["Service"],
        "batchoperations.s3.amazonaws.com"
    );
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(
        pairs(&role["PermissionsPolicy"]),
        set(&[
            (
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-1:111122223333:function:imgtag-tagger"
            ),
            (
                "s3:GetObject",
                "arn:aws:s3:::my-imgtag-bucket/imgtag/manifests/*"
            ),
            (
                "s3:GetObjectVersion",
                "arn:aws:s3:::my-imgtag-bucket/imgtag/manifests/*"
            ),
            (
                "s3:PutObject",
                "arn:aws:s3:::my-imgtag-bucket/imgtag/reports/*"
            ),
        ])
    );
    // The manifests and reports prefixes are where `imgtag backfill` and
    // its job write.
    assert_eq!(imgtag::backfill::MANIFEST_PREFIX, "imgtag/manifests/");
    assert_eq!(imgtag::backfill::REPORT_PREFIX, "imgtag/reports");

    let op = json("deploy/backfill-operator-policy.json");
    let got = pairs(&op);
    assert!(got.contains(&(
        "s3:PutObject".into(),
        "arn:aws:s3:::my-imgtag-bucket/imgtag/manifests/*".into()
    )));
    assert!(got.contains(&("s3:CreateJob".into(), "*".into())));
    let puts: Vec<_> = got.iter().filter(|(a, _)| a == "s3:PutObject").collect();
    assert_eq!(puts.len(), 1, "the backfill operator writes manifests only");
}

#[test]
fn sam_template_matches_the_handler_and_the_build() {
    let t = read("deploy/template.yaml");
    for needle in [
        "Transform: AWS::Serverless-2016-10-31",
        "Runtime: provided.al2023",
        "Handler: bootstrap",
        "Architectures: [arm64]",
        // Where `cargo lambda build --release --arm64 --bin imgtag-lambda`
        // puts the `bootstrap` binary.
        "CodeUri: ../target/lambda/imgtag-lambda/",
        "- Event: s3:ObjectCreated:*",
        "Function: !GetAtt Tagger.Arn",
        "- Name: prefix",
        "Value: !Ref UploadsPrefix",
        "ReservedConcurrentExecutions: !Ref ReservedConcurrency",
        "Action: rekognition:DetectLabels",
    ] {
        assert!(t.contains(needle), "template lacks {needle:?}");
    }
    // No broad grants (`s3:*` only in the TLS deny), and no role ->
    // bucket dependency (a cycle).
    assert_eq!(t.matches("s3:*").count(), 1);
    assert!(!t.contains("GetAtt Bucket.Arn"));
    // The function's role: GetObject on images, Get/Put on metadata only,
    // and sending failed events to its queue.
    let role = section(&t, "TaggerRole");
    assert!(role.contains("Action: s3:GetObject\n") && role.contains("${UploadsPrefix}*"));
    assert!(role.contains("- s3:PutObject") && role.contains("${MetadataPrefix}*"));
    assert!(
        !role.contains("ListBucket"),
        "ListBucket is for the operator only"
    );
    assert!(
        role.contains(
            "Action: sqs:SendMessage\n                Resource: !GetAtt FailureQueue.Arn\n"
        )
    );

    // Every IMGTAG_ variable the template sets is one the handler reads,
    // and the values it passes by default are accepted.
    let read_vars = RefCell::new(BTreeSet::new());
    imgtag::lambda::LambdaConfig::from_vars(|name| {
        read_vars.borrow_mut().insert(name.to_string());
        // The one variable without a default.
        (name == "IMGTAG_BUCKETS").then(|| "*".to_string())
    })
    .unwrap();
    let mut set_vars = Vec::new();
    for line in t.lines() {
        let line = line.trim();
        if let Some((name, value)) = line.split_once(':')
            && name.starts_with("IMGTAG_")
        {
            assert!(
                read_vars.borrow().contains(name),
                "template sets {name}, which the handler does not read"
            );
            set_vars.push((name.to_string(), value.trim().to_string()));
        }
    }
    assert_eq!(set_vars.len(), 8, "{set_vars:?}");
    // The function trusts exactly the stack's bucket, and decodes no more
    // than the MaxMegapixels parameter says.
    assert!(set_vars.contains(&("IMGTAG_BUCKETS".into(), "!Ref BucketName".into())));
    assert!(set_vars.contains(&("IMGTAG_MAX_MEGAPIXELS".into(), "!Ref MaxMegapixels".into())));
    let defaults = |name: &str| match name {
        "IMGTAG_MIN_CONFIDENCE" => Some("55".to_string()),
        "IMGTAG_MAX_LABELS" => Some(String::new()),
        "IMGTAG_UPLOADS_PREFIX" => Some("uploads/".into()),
        "IMGTAG_METADATA_PREFIX" => Some("metadata/".into()),
        "IMGTAG_DETECTOR" => Some("rekognition".into()),
        _ => None,
    };
    for (name, value) in &set_vars {
        if !value.starts_with("!Ref") {
            assert_eq!(defaults(name).as_deref(), Some(value.as_str()), "{name}");
        }
    }
    for (param, default) in [
        ("UploadsPrefix", "uploads/"),
        ("MetadataPrefix", "metadata/"),
        ("MinConfidence", "55"),
        ("MaxLabels", "\"\""),
        ("MaxMegapixels", "50"),
        ("Features", "GENERAL_LABELS"),
    ] {
        let at = t.find(&format!("  {param}:\n")).unwrap();
        assert!(
            t[at..].lines().nth(2).unwrap().trim() == format!("Default: {default}"),
            "{param}"
        );
    }
    let with_bucket = |name: &str| match name {
        "IMGTAG_BUCKETS" => Some("my-imgtag-bucket".to_string()),
        "IMGTAG_MAX_MEGAPIXELS" => Some("50".to_string()),
        "IMGTAG_FEATURES" => Some("GENERAL_LABELS,IMAGE_PROPERTIES".to_string()),
        _ => defaults(name),
    };
    let config = imgtag::lambda::LambdaConfig::from_vars(with_bucket).unwrap();
    // The parameter's ceiling is the handler's, and the memory is sized
    // for it.
    assert_eq!(config.max_pixels, Some(50_000_000));
    // The parameter's other allowed value is one the handler accepts.
    assert_eq!(config.features, imgtag::detection::Features::ALL);
    let max = t.find("  MaxMegapixels:\n").unwrap();
    assert!(t[max..].contains("MaxValue: 50\n"));
    assert_eq!(imgtag::lambda::MAX_MEGAPIXELS, 50.0);
    assert!(section(&t, "Tagger").contains("MemorySize: 1024\n"));
}

/// The function's role and the operators may delete claims (src/claim.rs)
/// and nothing else, and a claim outlives the invocation that holds it, and not by much.
#[test]
fn the_tagger_deletes_claims_only_and_its_lease_outlives_it() {
    let t = read("deploy/template.yaml");
    let operator = section(&t, "OperatorPolicy");
    assert_eq!(operator.matches("s3:DeleteObject").count(), 1);
    assert!(operator.contains(
        "Action: s3:DeleteObject\n            \
         Resource: !Sub arn:${AWS::Partition}:s3:::${BucketName}/${MetadataPrefix}*.lock\n"
    ));
    let role = section(&t, "TaggerRole");
    assert_eq!(role.matches("s3:DeleteObject").count(), 1);
    assert!(role.contains(
        "Action: s3:DeleteObject\n                \
         Resource: !Sub arn:${AWS::Partition}:s3:::${BucketName}/${MetadataPrefix}*.lock\n"
    ));
    let timeout: u64 = section(&t, "Tagger")
        .lines()
        .find_map(|l| l.trim().strip_prefix("Timeout: "))
        .and_then(|v| v.parse().ok())
        .expect("the function's Timeout");
    let lease = imgtag::lambda::CLAIM_LEASE.as_secs();
    assert!(
        timeout < lease && lease <= timeout + 60,
        "{timeout} s, {lease} s"
    );
}

/// The text of one resource (or parameter, or output) of the template: its
/// name line and every line indented deeper, up to the next entry.
fn section<'a>(t: &'a str, name: &str) -> &'a str {
    let header = format!("\n  {name}:\n");
    let start = t.find(&header).unwrap_or_else(|| panic!("no entry {name}")) + 1;
    let mut end = start + header.len() - 1;
    for line in t[end..].split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if !line.trim().is_empty() && indent <= 2 {
            break;
        }
        end += line.len();
    }
    &t[start..end]
}

#[test]
fn sam_template_keeps_failures_data_and_trust() {
    let t = read("deploy/template.yaml");
    // The bucket outlives the stack, and refuses plain HTTP.
    let bucket = section(&t, "Bucket");
    assert!(bucket.contains("    DeletionPolicy: Retain\n"), "{bucket}");
    assert!(
        bucket.contains("    UpdateReplacePolicy: Retain\n"),
        "{bucket}"
    );
    assert!(bucket.contains("    DependsOn: TaggerInvokePermission\n"));
    let policy = section(&t, "BucketPolicy");
    for needle in [
        "Bucket: !Ref Bucket",
        "Effect: Deny",
        "Principal: \"*\"",
        "Action: \"s3:*\"",
        "- !Sub arn:${AWS::Partition}:s3:::${Bucket}\n",
        "- !Sub arn:${AWS::Partition}:s3:::${Bucket}/*\n",
        "aws:SecureTransport: \"false\"",
    ] {
        assert!(policy.contains(needle), "bucket policy lacks {needle:?}");
    }
    // Only this bucket in this account may invoke the function.
    let permission = section(&t, "TaggerInvokePermission");
    for needle in [
        "Type: AWS::Lambda::Permission",
        "FunctionName: !Ref Tagger",
        "Principal: s3.amazonaws.com",
        "SourceArn: !Sub arn:${AWS::Partition}:s3:::${BucketName}\n",
        "SourceAccount: !Ref AWS::AccountId",
    ] {
        assert!(permission.contains(needle), "permission lacks {needle:?}");
    }
    // No SAM S3 event, whose generated permission names no SourceArn.
    assert!(!section(&t, "Tagger").contains("Events:"));
    // Events that exhaust their retries are kept, and someone is told.
    let invoke = section(&t, "TaggerAsyncConfig");
    for needle in [
        "Type: AWS::Lambda::EventInvokeConfig",
        "MaximumRetryAttempts: 2",
        "OnFailure:\n          Destination: !GetAtt FailureQueue.Arn",
    ] {
        assert!(invoke.contains(needle), "invoke config lacks {needle:?}");
    }
    assert!(section(&t, "FailureQueue").contains("Type: AWS::SQS::Queue"));
    let alarm = section(&t, "FailureQueueAlarm");
    for needle in [
        "Type: AWS::CloudWatch::Alarm",
        "Namespace: AWS/SQS",
        "MetricName: ApproximateNumberOfMessagesVisible",
        "Value: !GetAtt FailureQueue.QueueName",
        "Threshold: 0",
        "ComparisonOperator: GreaterThanThreshold",
    ] {
        assert!(alarm.contains(needle), "alarm lacks {needle:?}");
    }
    // The outputs, old and new.
    let outputs = &t[t.find("\nOutputs:\n").unwrap()..];
    for name in [
        "BucketName",
        "FunctionArn",
        "BatchOperationsRoleArn",
        "OperatorPolicyArn",
        "FailureQueueUrl",
        "FailureQueueArn",
    ] {
        assert!(outputs.contains(&format!("\n  {name}:\n")), "output {name}");
    }
}
