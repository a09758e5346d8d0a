use std::collections::BTreeMap;

use super::*;
use crate::diff::{EpisodeIssue, Event};
use crate::model::{Incarnation, Issue, IssueCode, ResolveReason, Status, Timestamp};

fn pending(profile: &str, detail: EventDetail) -> Pending {
    let event = Event {
        sequence: 3,
        key: ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", profile),
        incarnation: Incarnation {
            arn: format!("arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/{profile}/1"),
            created_at: Timestamp::from_secs(1),
        },
        status: Status::from_wire("ACTIVE"),
        observed_at: Timestamp::from_secs(1_700_000_600),
        detail,
    };
    Pending {
        id: event.id(),
        sink: "slack".into(),
        event,
        labels: BTreeMap::from([("env".into(), "prod".into())]),
        enqueued_at: Timestamp::from_secs(1_700_000_600),
        attempts: 0,
        not_before: None,
        generation: 0,
    }
}

fn episode(code: &str, ids: usize, message: &str) -> EpisodeIssue {
    EpisodeIssue {
        issue: Issue {
            code: IssueCode::from_wire(code),
            message: message.to_owned(),
            resource_ids: (0..ids).map(|i| format!("subnet-{i:017x}")).collect(),
        },
        episode_id: format!("episode-{code}"),
        since: Timestamp::from_secs(1_700_000_000),
    }
}

fn opened(profile: &str, code: &str, ids: usize) -> Pending {
    let issue = episode(code, ids, &format!("{code} on <this> & that"));
    pending(profile, EventDetail::IssueOpened { issue })
}

fn resolved(profile: &str, code: &str) -> Pending {
    let detail = EventDetail::IssueResolved {
        issue: episode(code, 2, "gone"),
        resolved_at: Timestamp::from_secs(1_700_000_600),
        reason: ResolveReason::Cleared,
    };
    pending(profile, detail)
}

fn chars(value: &Value) -> usize {
    value.as_str().unwrap().chars().count()
}

/// Asserts every limit of Slack's Block Kit that the message uses.
fn assert_within_limits(message: &Value) {
    assert!(chars(&message["text"]) <= limits::TEXT);
    let blocks = message["blocks"].as_array().unwrap();
    assert!(blocks.len() <= limits::BLOCKS);
    for block in blocks {
        match block["type"].as_str().unwrap() {
            "header" => assert!(chars(&block["text"]["text"]) <= limits::HEADER_TEXT),
            "section" => {
                if let Some(text) = block.get("text") {
                    assert!(chars(&text["text"]) <= limits::SECTION_TEXT);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(fields.len() <= limits::FIELDS);
                    for field in fields {
                        assert!(chars(&field["text"]) <= limits::FIELD_TEXT);
                    }
                }
            }
            "context" => {
                for element in block["elements"].as_array().unwrap() {
                    assert!(chars(&element["text"]) <= limits::SECTION_TEXT);
                }
            }
            other => panic!("unexpected block {other}"),
        }
    }
}

#[test]
fn messages_stay_within_slacks_limits_with_5000_resources_and_4_codes() {
    let long_message = "x".repeat(10_000);
    for code in [
        "AccessDenied",
        "ClusterUnreachable",
        "InternalFailure",
        "SomethingNew",
    ] {
        let mut event = opened("web", code, 5000);
        if let EventDetail::IssueOpened { issue } = &mut event.event.detail {
            issue.issue.message = long_message.clone();
        }
        let message = message(&[event]);
        assert_within_limits(&message);
        let text = message.to_string();
        assert!(text.contains("and 4"), "resource ids end with 'and N more'");
        assert!(text.contains("Affected resources (5000)"));
    }
    // A group of 40 profiles with a very long cluster name, too.
    let group: Vec<Pending> = (0..40)
        .map(|i| {
            let mut p = opened(
                &format!("profile-{i:02}-{}", "p".repeat(90)),
                "ClusterUnreachable",
                5000,
            );
            p.event.key.cluster = "c".repeat(200);
            p
        })
        .collect();
    assert_within_limits(&message(&group));
}

#[test]
fn one_event_reads_as_what_happened_where_with_a_hint_and_a_console_link() {
    let message = message(&[opened("web", "AccessDenied", 2)]);
    let text = message.to_string();
    assert_eq!(
        message["text"],
        "AccessDenied opened on prod/web (account 111122223333, us-east-1)"
    );
    assert!(text.contains(":red_circle: AccessDenied opened on prod/web"));
    assert!(text.contains("trust policy allows eks-fargate-pods.amazonaws.com"));
    assert!(text.contains(
        "https://us-east-1.console.aws.amazon.com/eks/home?region=us-east-1#/clusters/prod/fargate-profiles/web"
    ));
    assert!(
        text.contains("AccessDenied on &lt;this&gt; &amp; that"),
        "{text}"
    );
    assert!(text.contains("`subnet-00000000000000000`, `subnet-00000000000000001`"));
    assert!(text.contains("*Account*\\n111122223333"));
}

#[test]
fn resolved_messages_look_different_from_opened_ones() {
    let open = message(&[opened("web", "AccessDenied", 2)]);
    let done = message(&[resolved("web", "AccessDenied")]);
    let (open_header, done_header) = (
        &open["blocks"][0]["text"]["text"],
        &done["blocks"][0]["text"]["text"],
    );
    assert!(open_header.as_str().unwrap().starts_with(":red_circle:"));
    assert!(
        done_header
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: Resolved")
    );
    let done_text = done.to_string();
    assert!(
        done_text.contains("after 10m: the issue cleared"),
        "{done_text}"
    );
    assert!(
        !done_text.contains(":bulb:"),
        "no remediation hint once resolved"
    );
    assert!(open.to_string().contains(":bulb:"));
    let hint = remediation(Kind::FARGATE_PROFILE, "SomeCodeFromTheFuture");
    assert!(hint.contains("does not know"));
}

#[test]
fn a_group_summarises_how_many_profiles_which_and_the_shared_code() {
    let group: Vec<Pending> = (0..40)
        .map(|i| opened(&format!("profile-{i:02}"), "ClusterUnreachable", 2))
        .collect();
    let message = message(&group);
    assert_eq!(
        message["text"],
        "ClusterUnreachable opened on 40 profiles of cluster prod (account 111122223333, us-east-1)"
    );
    let text = message.to_string();
    assert!(text.contains("*Profiles*\\nprofile-00, profile-01"));
    assert!(text.contains("profile-39"));
    assert!(
        text.contains("and 35 more"),
        "console links for the first five"
    );
    let sink = SlackSink::new(
        SecretUrl::new("https://hooks.slack.com/services/T/B/x".parse().unwrap()),
        Clock::fixed(Timestamp::from_secs(1_700_000_600)),
    );
    let keys: std::collections::BTreeSet<Option<String>> =
        group.iter().map(|p| sink.group_key(p)).collect();
    assert_eq!(keys.len(), 1);
    assert_ne!(
        sink.group_key(&resolved("profile-00", "ClusterUnreachable")),
        sink.group_key(&group[0])
    );
}

/// `event` about the fake kind's resource `name` instead of a profile.
fn widget(name: &str, mut event: Pending) -> Pending {
    event.event.key = ResourceKey::new(
        crate::model::fake::WIDGET,
        "111122223333",
        "us-east-1",
        "prod",
        name,
    );
    event
}

#[test]
fn another_kind_reads_with_its_own_nouns_hint_and_console_page() {
    let one = message(&[widget("w1", opened("w1", "Wobbly", 2))]);
    let text = one.to_string();
    assert!(text.contains("*Widget*\\nw1"), "{text}");
    assert!(text.contains("Tighten the widget's bolts."), "{text}");
    assert!(text.contains(
        "https://us-east-1.console.aws.amazon.com/eks/home?region=us-east-1#/clusters/prod/widgets/w1|w1 in the AWS console"
    ));
    let unknown = message(&[widget("w1", opened("w1", "Rattly", 0))]).to_string();
    assert!(unknown.contains("A widget code this version does not know."));
    let deleted = message(&[widget("w1", pending("w1", EventDetail::ResourceDeleted))]);
    assert!(
        deleted.to_string().contains("*Widget deleted*"),
        "{deleted}"
    );

    let group: Vec<Pending> = (0..3)
        .map(|i| widget(&format!("w{i}"), opened("w", "Wobbly", 1)))
        .collect();
    let many = message(&group);
    assert_eq!(
        many["text"],
        "Wobbly opened on 3 widgets of cluster prod (account 111122223333, us-east-1)"
    );
    let text = many.to_string();
    assert!(text.contains("*Widgets*\\nw0, w1, w2"), "{text}");
    for word in ["rofile", "Fargate", "fargate"] {
        assert!(!text.contains(word), "{word} in {text}");
    }

    // A widget and a profile with the same code are not summarised together.
    let sink = SlackSink::new(
        SecretUrl::new("https://hooks.slack.com/services/T/B/x".parse().unwrap()),
        Clock::fixed(Timestamp::from_secs(1_700_000_600)),
    );
    let profile = opened("w0", "Wobbly", 1);
    assert_ne!(sink.group_key(&group[0]), sink.group_key(&profile));
    assert_eq!(sink.group_key(&group[0]), sink.group_key(&group[2]));
}

#[test]
fn a_kind_whose_resource_is_the_cluster_links_the_clusters_page() {
    static CLUSTERISH: crate::model::KindSpec = crate::model::KindSpec {
        name: "clusterish",
        title: "Clusterish",
        alert_name: "Clusterish",
        metric_prefix: "eks_clusterish",
        name_label: None,
        list: crate::model::Operation::ListClusters,
        describe: crate::model::Operation::DescribeCluster,
        statuses: &[],
        alert_worthy: &[],
        codes: &[],
        noun: "cluster",
        plural: "clusters",
        console_path: None,
        hints: &[],
        fallback_hint: "",
    };
    let key = ResourceKey::new(Kind::new(&CLUSTERISH), "1", "eu-west-1", "prod", "prod");
    assert_eq!(
        console_url(&key),
        "https://eu-west-1.console.aws.amazon.com/eks/home?region=eu-west-1#/clusters/prod"
    );
}

/// Every mrkdwn text of a message: the top-level `text`, sections, fields and context.
fn mrkdwn_texts(message: &Value) -> Vec<String> {
    let mut texts = vec![message["text"].as_str().unwrap().to_owned()];
    for block in message["blocks"].as_array().unwrap() {
        let mut parts: Vec<&Value> = Vec::new();
        if block["text"]["type"] == "mrkdwn" {
            parts.push(&block["text"]);
        }
        for list in ["fields", "elements"] {
            if let Some(items) = block[list].as_array() {
                parts.extend(items.iter().filter(|i| i["type"] == "mrkdwn"));
            }
        }
        texts.extend(parts.iter().map(|p| p["text"].as_str().unwrap().to_owned()));
    }
    texts
}

#[test]
fn markup_from_eks_in_codes_statuses_and_names_stays_text() {
    let hostile = "a|b>c <!here>";
    let mut event = opened(hostile, "<!channel>", 1);
    event.event.status = Status::from_wire("<@U123>");
    let status = pending(
        hostile,
        EventDetail::StatusChanged {
            from: Some(Status::from_wire("<!everyone>")),
            to: Status::from_wire("<#C1|x>"),
        },
    );
    for batch in [vec![event], vec![status]] {
        let message = message(&batch);
        for text in mrkdwn_texts(&message) {
            // The only markup is the console link this sink writes.
            let links = text.matches("<https://").count();
            assert_eq!(text.matches('<').count(), links, "{text}");
            assert!(
                !text.contains("<!") && !text.contains("<@") && !text.contains("<#"),
                "{text}"
            );
        }
        let context = message["blocks"].as_array().unwrap().last().unwrap()["elements"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            context.contains("/fargate-profiles/a%7Cb%3Ec%20%3C%21here%3E|a|b&gt;c &lt;!here&gt; in the AWS console>"),
            "{context}"
        );
    }
}
