-- imgtag metadata in Amazon Athena: label queries over a whole bucket,
-- for buckets past what one machine's index can serve.
--
-- Replace BUCKET with the bucket name and `metadata/` with the metadata
-- prefix if you changed it. Written for Athena engine version 3 (Trino
-- SQL); the table definition is Hive DDL, as Athena requires.
--
-- One document per line. The OpenX JSON SerDe reads one JSON object per
-- line of text. imgtag writes every metadata document as compact JSON on a
-- single line followed by a newline (contract::MetadataDoc::to_json_bytes;
-- a test in tests/inventory.rs holds it to that), so documents written by
-- imgtag are read whole. Documents written by other tools in a pretty-
-- printed layout, and the accepted bare-array shape (`[{"Name": ...}]`),
-- are not: with 'ignore.malformed.json' each of their lines becomes a row
-- of NULLs instead of failing every query. Query 6 below lists them; tag
-- or review them once with imgtag (which rewrites them compactly) or
-- rewrite them with `jq -c`.
--
-- Cost. Athena reads every object under LOCATION on every query: one GET
-- per document plus the bytes scanned (about 1-2 KB a document). At 1M
-- documents that is cheap; at 100M it is about $40 of GETs and some
-- 200 GB per query, and slow. Past a few million documents, snapshot the
-- table into Parquet once a day (query 7) and query the snapshot.

CREATE EXTERNAL TABLE IF NOT EXISTS imgtag_metadata (
  labels array<struct<
    name: string,
    confidence: double,
    parents: array<struct<name: string>>,
    aliases: array<struct<name: string>>,
    categories: array<struct<name: string>>,
    instances: array<struct<
      boundingbox: struct<width: double, height: double, `left`: double, top: double>,
      confidence: double
    >>
  >>,
  labelmodelversion string,
  imgtag struct<
    schemaversion: int,
    source: struct<bucket: string, key: string, etag: string, size: bigint>,
    detector: string,
    minconfidence: double,
    maxlabels: int,
    taggedat: string,
    taggedby: string,
    review: struct<
      added: array<string>,
      removed: array<string>,
      flagged: array<string>,
      reviewedat: string
    >,
    error: struct<code: string, message: string>
  >
)
-- The SerDe matches JSON keys case-insensitively by default ('Labels' to
-- labels, 'ImgTag' to imgtag); fields not declared here are ignored.
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION 's3://BUCKET/metadata/';

-- The headline label (contract §3), approximated in SQL. imgtag computes it
-- in Rust (src/headline.rs); this view follows the same rule with what a
-- document alone says:
--  * a label's ancestors are its Parents only. imgtag also falls back to
--    its shipped taxonomy for labels without Parents (documents from other
--    pipelines); here such labels are roots;
--  * a label's depth is how many of its Parents are labels of the same
--    document. Rekognition and imgtag's local detector list every ancestor,
--    so this equals the longest chain unless a label has two lineages;
--  * names match case-insensitively; aliases are not followed;
--  * settings (Indoors, Outdoors, Nature and labels below them) start the
--    search only when every root is a setting, as in imgtag.
-- For exact headlines over the whole bucket, imgtag would have to write the
-- headline into each document; today it does not.
CREATE OR REPLACE VIEW imgtag_headline AS
WITH doc AS (
    SELECT "$path" AS path, labels, transform(labels, x -> lower(x.name)) AS names
    FROM imgtag_metadata
    WHERE labels IS NOT NULL AND imgtag.error IS NULL
),
label AS (
    SELECT
        d.path,
        t.name,
        t.confidence,
        t.pos,
        coalesce(transform(t.parents, p -> lower(p.name)), ARRAY[]) AS ancestors,
        coalesce(cardinality(filter(t.parents, p -> contains(d.names, lower(p.name)))), 0) AS depth,
        (lower(t.name) IN ('indoors', 'outdoors', 'nature')
            OR coalesce(any_match(t.parents, p -> lower(p.name) IN ('indoors', 'outdoors', 'nature')), false)
        ) AS setting
    FROM doc AS d
    -- Trino expands each struct's fields into columns: name them all.
    CROSS JOIN UNNEST(d.labels) WITH ORDINALITY
        AS t(name, confidence, parents, aliases, categories, instances, pos)
),
root AS (
    SELECT path, name AS root_name
    FROM (
        SELECT path, name,
            row_number() OVER (PARTITION BY path ORDER BY setting, confidence DESC, pos) AS rn
        FROM label
        WHERE depth = 0
    ) AS r
    WHERE rn = 1
)
SELECT path, headline, confidence
FROM (
    SELECT l.path, l.name AS headline, l.confidence,
        row_number() OVER (PARTITION BY l.path ORDER BY l.depth DESC, l.confidence DESC, l.pos) AS rn
    FROM label AS l
    JOIN root AS r ON r.path = l.path
    WHERE lower(l.name) = lower(r.root_name) OR contains(l.ancestors, lower(r.root_name))
) AS h
WHERE rn = 1;

-- 1. Images whose headline label is below 70 (`imgtag ls --below 70`),
--    least confident first.
SELECT h.path, m.imgtag.source.key AS image, h.headline, h.confidence
FROM imgtag_headline AS h
JOIN imgtag_metadata AS m ON m."$path" = h.path
WHERE h.confidence < 70
ORDER BY h.confidence;

-- 2. Images with the label Cat, named or as a parent of another label
--    (`imgtag ls --label cat`), with the best confidence it has there.
SELECT m."$path" AS path, m.imgtag.source.key AS image, max(t.confidence) AS confidence
FROM imgtag_metadata AS m
CROSS JOIN UNNEST(m.labels) AS t(name, confidence, parents, aliases, categories, instances)
WHERE lower(t.name) = 'cat'
    OR coalesce(any_match(t.parents, p -> lower(p.name) = 'cat'), false)
GROUP BY m."$path", m.imgtag.source.key
ORDER BY confidence;

-- 3. The same, only where that confidence is below 70
--    (`imgtag ls --label cat --below 70`).
SELECT m."$path" AS path, max(t.confidence) AS confidence
FROM imgtag_metadata AS m
CROSS JOIN UNNEST(m.labels) AS t(name, confidence, parents, aliases, categories, instances)
WHERE lower(t.name) = 'cat'
    OR coalesce(any_match(t.parents, p -> lower(p.name) = 'cat'), false)
GROUP BY m."$path"
HAVING max(t.confidence) < 70;

-- 4. The most common labels.
SELECT t.name, count(*) AS images, avg(t.confidence) AS mean_confidence
FROM imgtag_metadata AS m
CROSS JOIN UNNEST(m.labels) AS t(name, confidence, parents, aliases, categories, instances)
GROUP BY t.name
ORDER BY images DESC
LIMIT 50;

-- 5. Failed images, and images an operator flagged.
SELECT "$path" AS path, imgtag.error.code, imgtag.error.message
FROM imgtag_metadata
WHERE imgtag.error IS NOT NULL;

SELECT "$path" AS path, imgtag.review.flagged
FROM imgtag_metadata
WHERE cardinality(imgtag.review.flagged) > 0;

-- 6. Documents Athena could not read (pretty-printed, bare arrays, not
--    JSON): every line of them is a row of NULLs.
SELECT "$path" AS path, count(*) AS unreadable_lines
FROM imgtag_metadata
WHERE labels IS NULL
GROUP BY "$path";

-- 7. A Parquet snapshot for repeated queries at 100M documents: one pass
--    over the JSON, then queries read a few columns of a few large files.
--    Drop the old snapshot (and its S3 prefix) before re-creating it.
CREATE TABLE imgtag_metadata_snapshot
WITH (format = 'PARQUET', external_location = 's3://BUCKET-athena/imgtag-snapshot/')
AS SELECT "$path" AS path, labels, imgtag
FROM imgtag_metadata
WHERE labels IS NOT NULL;

-- 8. Stale and untagged images at scale, with an S3 Inventory table of
--    the bucket (set up as in the S3 documentation, "Querying Amazon S3
--    Inventory with Amazon Athena"; here named s3_inventory, CSV, with
--    columns key and e_tag, one partition dt). Inventory keys are
--    URL-encoded (`+` for a space) and ETags unquoted.
WITH images AS (
    SELECT url_decode(key) AS key, e_tag
    FROM s3_inventory
    WHERE dt = '2026-12-01-01-00' AND url_decode(key) LIKE 'uploads/%'
)
SELECT i.key,
    CASE WHEN m.imgtag IS NULL THEN 'untagged' ELSE 'stale' END AS status
FROM images AS i
LEFT JOIN imgtag_metadata AS m ON m.imgtag.source.key = i.key
WHERE m.imgtag IS NULL OR replace(m.imgtag.source.etag, '"', '') <> i.e_tag;
