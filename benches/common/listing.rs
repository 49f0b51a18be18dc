//! What the listing benches share: the baseline they are measured against
//! (a bare `aws-sdk-s3` paginator listing both prefixes at once), and their
//! knobs from the environment.

/// Both prefixes of `bucket` listed at once, every page, nothing else: the
/// objects counted.
pub async fn bare_listing(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let list = |prefix: &'static str| async move {
        let mut n = 0;
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            n += page.expect("listing").contents().len();
        }
        n
    };
    let (a, b) = tokio::join!(list("uploads/"), list("metadata/"));
    a + b
}

/// Both prefixes of `bucket` listed by one paginator, one prefix after
/// the other: the objects counted.
#[allow(dead_code)] // not every bench that shares this file uses it
pub async fn serial_listing(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let mut n = 0;
    for prefix in ["uploads/", "metadata/"] {
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            n += page.expect("listing").contents().len();
        }
    }
    n
}
