//! Every job example of RDI's documentation (worker/tests/data/rdi/examples.json) is read
//! as RDI reads it; a fragment (no `source`) is completed with one.

use std::path::Path;

use serde_json::Value;

use redsink_worker::job::Job;

const EXAMPLES: &str = include_str!("data/rdi/examples.json");

#[test]
fn every_documented_job_is_accepted() {
    let examples: Vec<Value> = serde_json::from_str(EXAMPLES).unwrap();
    let mut accepted = 0;
    for example in examples
        .iter()
        .filter(|example| example["kind"] == "job_example")
    {
        let name = example["name"].as_str().unwrap();
        let text = example["job_yaml"].as_str().unwrap();
        let mut document: serde_norway::Value = serde_norway::from_str(text).unwrap();
        if let serde_norway::Value::Mapping(mapping) = &mut document {
            if !mapping.contains_key("source") {
                mapping.insert(
                    "source".into(),
                    serde_norway::from_str("{table: t}").unwrap(),
                );
            }
        }
        let completed = serde_norway::to_string(&document).unwrap();
        Job::parse(&completed, Path::new("job.yaml")).unwrap_or_else(|e| panic!("{name}: {e}"));
        accepted += 1;
    }
    assert_eq!(accepted, 66);
}

mod common;
use common::Worker;
use redsink_tests::{call, RedisServer};

/// A change event added to `stream` under its record key, as Debezium Server adds them.
fn add_change(con: &mut redsink_tests::redis::Connection, stream: &str, key: &str, event: &str) {
    call::<String>(con, &["XADD", stream, "*", key, event]).unwrap();
}

fn example_job(name: &str) -> String {
    let examples: Vec<Value> = serde_json::from_str(EXAMPLES).unwrap();
    examples
        .iter()
        .find(|example| example["name"] == name)
        .and_then(|example| example["job_yaml"].as_str())
        .unwrap_or_else(|| panic!("no example {name}"))
        .to_owned()
}

/// The documented outputs, end to end: Debezium events for Chinook's track 16 and album
/// 42 through the docs' own job files, and Redis holding what the docs show.
#[test]
fn documented_outputs_end_to_end() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let track = r#"{"before":null,"after":{"trackid":16,"name":"Dog Eat Dog","albumid":4,"milliseconds":215196,"bytes":7032162},"source":{"connector":"postgresql","lsn":100,"table":"track"},"op":"c"}"#;
    add_change(&mut con, "data:chinook.track", r#"{"trackid":16}"#, track);
    let album = r#"{"before":null,"after":{"albumid":42,"title":"Let There Be Rock","artistid":1},"source":{"connector":"postgresql","lsn":101,"table":"album"},"op":"c"}"#;
    add_change(&mut con, "data:album", r#"{"albumid":42}"#, album);
    let worker = Worker::start(
        &redis,
        &[
            &example_job("Create track hash with calculated fields"),
            &example_job("Write album title to string"),
        ],
    );
    worker.wait_until(&redis, "both written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "track:16", "AlbumTitle:42"])? == 2)
    });
    // `hgetall track:16` as the docs show it.
    let fields: Vec<String> = call(&mut con, &["HGETALL", "track:16"]).unwrap();
    assert_eq!(
        fields,
        [
            "id",
            "16",
            "name",
            "Dog Eat Dog",
            "duration",
            "3:35.0",
            "storagesize",
            "6.71MB"
        ]
    );
    assert_eq!(
        call::<String>(&mut con, &["GET", "AlbumTitle:42"]).unwrap(),
        "Let There Be Rock"
    );
    let ttl: i64 = call(&mut con, &["TTL", "AlbumTitle:42"]).unwrap();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
}

/// RDI's lookups against Redis: HGET of the artist's name into each album, and HGETALL of
/// the customer into each order (an object, flattened into the order's hash), the lookups
/// of a batch made in one pipeline.
#[test]
fn lookups_read_what_redis_holds() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    call::<i64>(&mut con, &["HSET", "artist:artistid:1", "name", "AC/DC"]).unwrap();
    call::<i64>(
        &mut con,
        &["HSET", "customer:5", "name", "Ann", "city", "Berlin"],
    )
    .unwrap();
    for album in [1, 2] {
        let event = format!(
            r#"{{"before":null,"after":{{"albumid":{album},"title":"T{album}","artistid":{}}},"source":{{"table":"album"}},"op":"c"}}"#,
            album
        );
        add_change(
            &mut con,
            "data:album",
            &format!(r#"{{"albumid":{album}}}"#),
            &event,
        );
    }
    let order = r#"{"before":null,"after":{"order_id":9,"customer_id":5},"source":{"table":"order"},"op":"c"}"#;
    add_change(&mut con, "data:order", r#"{"order_id":9}"#, order);
    let worker = Worker::start(
        &redis,
        &[
            &example_job("data-pipelines__transform-examples__redis-lookup-example#0"),
            &example_job("Cached lookup"),
        ],
    );
    worker.wait_until(&redis, "albums and the order written", |con| {
        Ok(call::<i64>(
            con,
            &[
                "EXISTS",
                "album:albumid:1",
                "album:albumid:2",
                "order:order_id:9",
            ],
        )? == 3)
    });
    let artist: Option<String> = call(&mut con, &["HGET", "album:albumid:1", "artist"]).unwrap();
    assert_eq!(artist.as_deref(), Some("AC/DC"));
    // Album 2's artist (2) is not in Redis: the lookup gives null, the field is left out.
    let none: Option<String> = call(&mut con, &["HGET", "album:albumid:2", "artist"]).unwrap();
    assert_eq!(none, None);
    let order: std::collections::BTreeMap<String, String> =
        call(&mut con, &["HGETALL", "order:order_id:9"]).unwrap();
    assert_eq!(
        order.get("customer.city").map(String::as_str),
        Some("Berlin"),
        "{order:?}"
    );
    assert_eq!(order.get("customer_id").map(String::as_str), Some("5"));
}

/// A `data_type: json` output on a server without JSON: JSON text in a string, said at
/// start.
#[test]
fn json_outputs_without_json_on_the_server_are_strings_and_said_so() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    let event = r#"{"before":null,"after":{"InvoiceId":7,"Total":"3.96"},"source":{"table":"invoice"},"op":"c"}"#;
    add_change(&mut con, "data:public.invoice", r#"{"InvoiceId":7}"#, event);
    let worker = Worker::start(&redis, &[&example_job("Write invoice to JSON")]);
    worker.wait_until(&redis, "the invoice written", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice_id:7"])? == 1)
    });
    let stored: String = call(&mut con, &["GET", "invoice_id:7"]).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()["Total"],
        "3.96"
    );
    assert!(
        worker.log().contains("this server has no JSON (RedisJSON or Redis 8): each document is written as JSON text in a string"),
        "{}",
        worker.log()
    );
}

/// `data_type: json` where the server has JSON (RedisJSON): documents set with JSON.SET,
/// merged with JSON.MERGE (`on_update: merge`), removed on delete; through SINK.JSON,
/// versioned, with the module.
#[test]
fn json_outputs_are_json_documents_where_the_server_has_json() {
    json_documents_on(redsink_tests::Options::default().with_json());
}

/// The same without the module: JSON.SET and JSON.MERGE in MULTI/EXEC.
#[test]
fn json_outputs_are_json_documents_without_the_module_too() {
    json_documents_on(
        redsink_tests::Options::default()
            .with_json()
            .without_module(),
    );
}

fn json_documents_on(options: redsink_tests::Options) {
    let module = options.module;
    let redis = RedisServer::with(options);
    let mut con = redis.connection();
    let change = |op: &str, after: &str| {
        format!(r#"{{"before":null,"after":{after},"source":{{"table":"invoice"}},"op":"{op}"}}"#)
    };
    let replace = example_job("Write invoice to JSON");
    let merge = r#"source: {schema: public, table: invoice}
output:
  - uses: redis.write
    with:
      data_type: json
      on_update: merge
      key: {expression: "concat(['merged:', InvoiceId])"}
"#;
    call::<String>(
        &mut con,
        &["JSON.SET", "merged:7", "$", r#"{"Note":"kept"}"#],
    )
    .unwrap();
    for (op, after) in [
        ("c", r#"{"InvoiceId":7,"Total":"3.96","Lines":[1,2]}"#),
        ("u", r#"{"InvoiceId":7,"Total":"4.00"}"#),
    ] {
        add_change(
            &mut con,
            "data:public.invoice",
            r#"{"InvoiceId":7}"#,
            &change(op, after),
        );
    }
    let worker = Worker::start(&redis, &[&replace, merge]);
    worker.wait_until(&redis, "both changes written", |con| {
        let total: Option<String> = call(con, &["JSON.GET", "invoice_id:7", "$.Total"])?;
        Ok(total.as_deref() == Some(r#"["4.00"]"#))
    });
    let get = |con: &mut redsink_tests::redis::Connection, key: &str| -> Value {
        serde_json::from_str(&call::<String>(con, &["JSON.GET", key]).unwrap()).unwrap()
    };
    assert_eq!(
        call::<String>(&mut con, &["TYPE", "invoice_id:7"]).unwrap(),
        "ReJSON-RL"
    );
    // Replaced: the update's document alone, with the job's expiry.
    assert_eq!(
        get(&mut con, "invoice_id:7"),
        serde_json::json!({"InvoiceId": 7, "Total": "4.00"})
    );
    let ttl: i64 = call(&mut con, &["TTL", "invoice_id:7"]).unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");
    if module {
        // Versioned, as hashes are: the source entry id of the update, in its stream's
        // lane.
        let version: Option<i64> = call(
            &mut con,
            &[
                "SINK.VERSION",
                "invoice_id:7",
                "LANE",
                "data:public.invoice",
            ],
        )
        .unwrap();
        assert!(
            version.is_some_and(|version| version > 1_000_000),
            "{version:?}"
        );
    }
    // Merged: what the document held stays.
    assert_eq!(
        get(&mut con, "merged:7"),
        serde_json::json!({"Note": "kept", "InvoiceId": 7, "Total": "4.00", "Lines": [1, 2]})
    );
    let said = if module {
        "JSON documents, with SINK.JSON (JSON.SET and JSON.MERGE, versioned)"
    } else {
        "JSON documents, with JSON.SET and JSON.MERGE (replays are not version-checked without the module)"
    };
    assert!(worker.log().contains(said), "{}", worker.log());
    let delete = r#"{"before":{"InvoiceId":7},"after":null,"source":{"table":"invoice"},"op":"d"}"#;
    add_change(
        &mut con,
        "data:public.invoice",
        r#"{"InvoiceId":7}"#,
        delete,
    );
    worker.wait_until(&redis, "the document removed", |con| {
        Ok(call::<i64>(con, &["EXISTS", "invoice_id:7", "merged:7"])? == 0)
    });
}

/// RDI's denormalization example, its two job files as documented: invoices as JSON
/// documents, each invoice line nested in its invoice's `InvoiceLineItems` map; a line
/// updated, moved to another invoice, deleted; the invoice written after its lines and
/// updated, keeping them.
#[test]
fn nested_rows_end_to_end() {
    let redis = RedisServer::with(redsink_tests::Options::default().with_json());
    let mut con = redis.connection();
    let invoices = example_job("data-pipelines__data-denormalization#2");
    let lines = example_job("data-pipelines__data-denormalization#3");
    let change = |con: &mut redsink_tests::redis::Connection,
                  table: &str,
                  op: &str,
                  before: &str,
                  after: &str| {
        let key = if table == "Invoice" {
            r#"{"InvoiceId":1}"#
        } else {
            r#"{"InvoiceLineId":0}"#
        };
        let event = format!(
            r#"{{"before":{before},"after":{after},"source":{{"schema":"public","table":"{table}"}},"op":"{op}"}}"#
        );
        add_change(con, &format!("data:public.{table}"), key, &event);
    };
    let line = |id: u32, invoice: u32, quantity: u32| {
        format!(r#"{{"InvoiceLineId":{id},"InvoiceId":{invoice},"Quantity":{quantity}}}"#)
    };
    for (op, before, after) in [
        ("c", "null".to_owned(), line(1, 1, 1)),
        ("c", "null".to_owned(), line(2, 1, 1)),
        ("c", "null".to_owned(), line(3, 1, 5)),
        ("u", line(1, 1, 1), line(1, 1, 2)),
        ("u", line(2, 1, 1), line(2, 2, 1)),
        ("d", line(3, 1, 5), "null".to_owned()),
    ] {
        change(&mut con, "InvoiceLine", op, &before, &after);
    }
    let worker = Worker::start(&redis, &[&invoices, &lines]);
    let document = |con: &mut redsink_tests::redis::Connection, key: &str| -> Option<Value> {
        let text: Option<String> = call(con, &["JSON.GET", key]).ok()?;
        serde_json::from_str(&text?).ok()
    };
    let items = serde_json::json!({"1": {"InvoiceLineId": 1, "InvoiceId": 1, "Quantity": 2}});
    let moved = serde_json::json!({"InvoiceLineItems":
        {"2": {"InvoiceLineId": 2, "InvoiceId": 2, "Quantity": 1}}});
    worker.wait_until(&redis, "the lines nested in their invoices", |con| {
        Ok(document(con, "Invoice:InvoiceId:1")
            == Some(serde_json::json!({ "InvoiceLineItems": items }))
            && document(con, "Invoice:InvoiceId:2").as_ref() == Some(&moved))
    });
    // The invoice itself, after its lines: created, then updated; its lines stay.
    change(
        &mut con,
        "Invoice",
        "c",
        "null",
        r#"{"InvoiceId":1,"Total":1.98}"#,
    );
    change(
        &mut con,
        "Invoice",
        "u",
        r#"{"InvoiceId":1,"Total":1.98}"#,
        r#"{"InvoiceId":1,"Total":3.96}"#,
    );
    let expected = serde_json::json!({"InvoiceId": 1, "Total": 3.96, "InvoiceLineItems": items});
    worker.wait_until(&redis, "the invoice written around its lines", |con| {
        Ok(document(con, "Invoice:InvoiceId:1").as_ref() == Some(&expected))
    });
    // The invoice's own write is versioned; the nested lines leave its version alone.
    let version: Option<i64> = call(
        &mut con,
        &[
            "SINK.VERSION",
            "Invoice:InvoiceId:1",
            "LANE",
            "data:public.Invoice",
        ],
    )
    .unwrap();
    assert!(version.is_some(), "{}", worker.log());
}

/// One documented example end to end: its job files, what Redis holds first, the rows
/// that change (table, record key, row), and what a read then gives.
struct Documented {
    jobs: &'static [&'static str],
    setup: &'static [&'static [&'static str]],
    changes: &'static [(&'static str, &'static str, &'static str)],
    read: &'static [&'static str],
    expected: Read,
}

/// What a read gives, as the documentation shows it.
enum Read {
    /// JSON text (JSON.GET), equal as JSON: JMESPath objects (`map`) keep their members
    /// in name order here, which the docs' listings do not.
    Json(&'static str),
    /// JSON text exactly as the docs show it.
    Text(&'static str),
    /// A reply's items (HGETALL, ZREVRANGE … WITHSCORES), in order.
    Items(&'static [&'static str]),
}

const EMPLOYEE_8: &str = r#"{"employeeid":8,"lastname":"Callahan","firstname":"Laura","title":"IT Staff","reportsto":6,"birthdate":-62467200000000,"hiredate":1078358400000000,"address":"923 7 ST NW"}"#;

/// Every job example whose documentation shows what Redis holds afterwards, against
/// RedisJSON: the rows the docs give (or imply), or chosen ones where they give none.
const DOCUMENTED: &[Documented] = &[
    Documented {
        jobs: &["Create multilevel employee JSON"],
        setup: &[],
        changes: &[(
            "employee",
            r#"{"employeeid":1}"#,
            r#"{"employeeid":1,"lastname":"Adams","firstname":"Andrew","address":"11120 Jasper Ave NW","city":"Edmonton","state":"AB","country":"Canada","postalcode":"T5K 2N1","phone":"+1 (780) 428-9482","email":"andrew@chinookcorp.com"}"#,
        )],
        read: &["JSON.GET", "emp:1", "$"],
        expected: Read::Json(
            r#"[{"id":1,"name":"Andrew ADAMS","address":{"street":"11120 Jasper Ave NW","city":"Edmonton","state":"AB","postalCode":"T5K 2N1","country":"Canada"},"contact":{"phone":"+1 (780) 428-9482","safeEmail":"andrew_at_chinookcorp_dot_com"}}]"#,
        ),
    },
    Documented {
        jobs: &["Add multiple fields to track"],
        setup: &[],
        changes: &[(
            "track",
            r#"{"trackid":1}"#,
            r#"{"trackid":1,"name":"For Those About To Rock (We Salute You)","albumid":1,"mediatypeid":1,"genreid":1,"composer":"Angus Young, Malcolm Young, Brian Johnson","milliseconds":343719,"bytes":11170334,"unitprice":"0.99"}"#,
        )],
        read: &["JSON.GET", "track:1", "$"],
        expected: Read::Text(
            r#"[{"trackid":1,"name":"For Those About To Rock (We Salute You)","albumid":1,"mediatypeid":1,"genreid":1,"composer":"Angus Young, Malcolm Young, Brian Johnson","milliseconds":343719,"bytes":11170334,"unitprice":"0.99","seconds":343,"composerlist":["Angus Young"," Malcolm Young"," Brian Johnson"]}]"#,
        ),
    },
    Documented {
        jobs: &["data-pipelines__transform-examples__redis-lookup-example#1"],
        setup: &[&[
            "JSON.SET",
            "artist:artistid:150",
            "$",
            r#"{"artistid":150,"name":"U2"}"#,
        ]],
        changes: &[(
            "album",
            r#"{"albumid":239}"#,
            r#"{"albumid":239,"title":"War","artistid":150}"#,
        )],
        read: &["JSON.GET", "album:albumid:239"],
        expected: Read::Json(
            r#"{"albumid":239,"title":"War","artist":{"artistid":150,"name":"U2"}}"#,
        ),
    },
    Documented {
        jobs: &["Remove hiredate from employee"],
        setup: &[],
        changes: &[("employee", r#"{"employeeid":8}"#, EMPLOYEE_8)],
        read: &["HGETALL", "emp:8"],
        expected: Read::Items(&[
            "employeeid",
            "8",
            "lastname",
            "Callahan",
            "firstname",
            "Laura",
            "title",
            "IT Staff",
            "reportsto",
            "6",
            "birthdate",
            "-62467200000000",
            "address",
            "923 7 ST NW",
        ]),
    },
    Documented {
        jobs: &["Remove multiple date fields from employee"],
        setup: &[],
        changes: &[("employee", r#"{"employeeid":8}"#, EMPLOYEE_8)],
        read: &["HGETALL", "emp:8"],
        expected: Read::Items(&[
            "employeeid",
            "8",
            "lastname",
            "Callahan",
            "firstname",
            "Laura",
            "title",
            "IT Staff",
            "reportsto",
            "6",
            "address",
            "923 7 ST NW",
        ]),
    },
    // The docs give the read, not the rows: two invoices.
    Documented {
        jobs: &["Write invoices to sorted set by total"],
        setup: &[],
        changes: &[
            (
                "invoice",
                r#"{"InvoiceId":98}"#,
                r#"{"InvoiceId":98,"Total":3.96}"#,
            ),
            (
                "invoice",
                r#"{"InvoiceId":99}"#,
                r#"{"InvoiceId":99,"Total":1.98}"#,
            ),
        ],
        read: &["ZREVRANGE", "invoices:sorted", "0", "9", "WITHSCORES"],
        expected: Read::Items(&["98", "3.96", "99", "1.98"]),
    },
    // One-to-one denormalization: the customer's own job, and its address merged in.
    Documented {
        jobs: &[
            "data-pipelines__data-denormalization#0",
            "data-pipelines__data-denormalization#1",
        ],
        setup: &[],
        changes: &[
            (
                "customers",
                r#"{"id":"1"}"#,
                r#"{"id":"1","first_name":"John","last_name":"Doe"}"#,
            ),
            (
                "addresses",
                r#"{"id":"7"}"#,
                r#"{"id":"7","customer_id":"1","street":"123 Main St","city":"Anytown","state":"CA","zip":"12345"}"#,
            ),
        ],
        read: &["JSON.GET", "customers:id:1"],
        expected: Read::Json(
            r#"{"id":"1","first_name":"John","last_name":"Doe","customer_address":{"street":"123 Main St","city":"Anytown","state":"CA","zip":"12345"}}"#,
        ),
    },
];

impl Documented {
    /// The example's jobs, parsed.
    fn jobs(&self) -> Vec<(String, Job)> {
        self.jobs
            .iter()
            .map(|name| {
                let text = example_job(name);
                let job = Job::parse(&text, Path::new("job.yaml")).unwrap();
                (text, job)
            })
            .collect()
    }

    /// Each change as Debezium's event, with the job that reads its table.
    fn events<'a>(&self, jobs: &'a [(String, Job)]) -> Vec<(&'a Job, &'static str, String)> {
        self.changes
            .iter()
            .map(|(table, key, row)| {
                let job = jobs
                    .iter()
                    .map(|(_, job)| job)
                    .find(|job| job.source.table.as_deref() == Some(table))
                    .unwrap_or_else(|| panic!("no job reads {table}"));
                let event = format!(
                    r#"{{"before":null,"after":{row},"source":{{"table":"{table}"}},"op":"c"}}"#
                );
                (job, *key, event)
            })
            .collect()
    }

    /// A server holding what the example needs first.
    fn server(&self) -> RedisServer {
        let redis = RedisServer::with(redsink_tests::Options::default().with_json());
        let mut con = redis.connection();
        for command in self.setup {
            call::<redsink_tests::redis::Value>(&mut con, command).unwrap();
        }
        redis
    }

    /// Whether the read gives what the documentation shows.
    fn read_as_documented(
        &self,
        con: &mut redsink_tests::redis::Connection,
    ) -> redsink_tests::redis::RedisResult<bool> {
        Ok(match self.expected {
            Read::Json(expected) => {
                let text: Option<String> = call(con, self.read)?;
                text.and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    == serde_json::from_str(expected).ok()
            }
            Read::Text(expected) => {
                call::<Option<String>>(con, self.read)?.as_deref() == Some(expected)
            }
            Read::Items(expected) => call::<Vec<String>>(con, self.read)? == expected,
        })
    }
}

#[test]
fn every_documented_output_end_to_end() {
    for example in DOCUMENTED {
        let redis = example.server();
        let mut con = redis.connection();
        let jobs = example.jobs();
        // Each row on the stream its table's job reads, as Debezium Server names them.
        for (job, key, event) in example.events(&jobs) {
            add_change(&mut con, &job.streams("data:").remove(0), key, &event);
        }
        let texts: Vec<&str> = jobs.iter().map(|(text, _)| text.as_str()).collect();
        let worker = Worker::start(&redis, &texts);
        worker.wait_until(
            &redis,
            &format!("{:?} as documented", example.jobs),
            |con| example.read_as_documented(con),
        );
    }
}

/// The same examples through `try`: the redis-cli commands it prints for each event, run
/// by redis-cli, leave what the documentation shows (lookups, which `try` cannot make
/// offline, aside).
#[test]
fn every_documented_output_through_try() {
    for example in DOCUMENTED.iter().filter(|example| example.setup.is_empty()) {
        let redis = example.server();
        let jobs = example.jobs();
        let mut commands = String::new();
        for (job, key, event) in example.events(&jobs) {
            let input = format!(r#"{{"key":{key},"value":{event}}}"#);
            let report = redsink_worker::dry_run::dry_run(job, &input).unwrap();
            let writes = report
                .split_once("writes:\n")
                .unwrap_or_else(|| panic!("no writes in {report}"))
                .1;
            for line in writes.lines() {
                commands.push_str(line.trim_start());
                commands.push('\n');
            }
        }
        let mut cli = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli (cargo make setup installs it)");
        use std::io::Write as _;
        cli.stdin
            .take()
            .unwrap()
            .write_all(commands.as_bytes())
            .unwrap();
        let output = cli.wait_with_output().unwrap();
        let mut con = redis.connection();
        assert!(
            example.read_as_documented(&mut con).unwrap(),
            "{:?} through try:\n{commands}\nredis-cli said:\n{}",
            example.jobs,
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// Nesting needs JSON or the module: against a plain Redis the worker does not start, and
/// says why.
#[test]
fn nest_outputs_refuse_a_server_without_json_or_the_module() {
    let redis = RedisServer::with(redsink_tests::Options::default().without_module());
    let lines = example_job("data-pipelines__data-denormalization#3");
    let mut worker = Worker::start(&redis, &[&lines]);
    assert_ne!(worker.exit_code(), Some(0));
    assert!(
        worker
            .log()
            .contains("nest outputs merge rows into their parent's document, which needs JSON on the server (RedisJSON, or Redis 8) or the redsink module; this Redis has neither"),
        "{}",
        worker.log()
    );
}
