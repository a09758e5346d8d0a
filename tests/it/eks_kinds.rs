//! Every kind beside Fargate profiles (node groups, add-ons, clusters, capabilities): the real
//! SDK adapter against the simulator's EKS REST-JSON over loopback.

use fargate_health_monitor::eks::{Eks, Page};
use fargate_health_monitor::model::{ErrorKind, IssueCode, Kind, Operation, ResourceKey, Status};
use fargate_health_monitor::simulator::{
    Command, DEFAULT_ACCOUNT, FaultKind, Health, IssueSpec, NodegroupSettings, Scaling, Scope,
    Simulator,
};
use serde_json::json;

use crate::support::{all_pages, http, sim_client, sim_target};

const REGION: &str = "us-east-1";

fn key(kind: Kind, cluster: &str, name: &str) -> ResourceKey {
    ResourceKey::new(kind, DEFAULT_ACCOUNT, REGION, cluster, name)
}

fn cluster(name: &str) -> ResourceKey {
    key(Kind::CLUSTER, name, name)
}

fn info<'a>(described: &'a fargate_health_monitor::eks::Described, label: &str) -> Option<&'a str> {
    described.info.get(label).map(String::as_str)
}

#[tokio::test]
async fn node_groups_add_ons_and_capabilities_page_through_every_name() {
    let sim = Simulator::start().await.unwrap();
    sim.apply(Command::SetPageLimit { limit: 2 }).unwrap();
    for kind in [Kind::NODEGROUP, Kind::ADDON, Kind::CAPABILITY] {
        for n in 0..5 {
            sim.add_resource(
                &key(kind, "prod", &format!("r{n}")),
                "ACTIVE",
                Health::Absent,
            );
        }
        // Another cluster's are not listed.
        sim.add_resource(&key(kind, "other", "x"), "ACTIVE", Health::Absent);
    }
    let client = sim_client(&sim_target(&sim, REGION, "prod", &["*"])).await;
    for kind in [Kind::NODEGROUP, Kind::ADDON, Kind::CAPABILITY] {
        let (names, pages) = all_pages(|token| client.list_resources(kind, "prod", token)).await;
        assert_eq!(names, ["r0", "r1", "r2", "r3", "r4"], "{kind}");
        assert_eq!(pages, 3, "{kind}");
        assert_eq!(sim.count(kind.spec().list), 3, "{kind}");
    }
    // The SDK asks for pages of 100; the simulator's limit of 2 makes three of them.
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.operation == Operation::ListNodegroups)
            .all(|r| r.status == 200 && r.cluster.as_deref() == Some("prod") && r.name.is_none())
    );
}

#[tokio::test]
async fn describes_arrive_converted_with_info_labels_sizes_and_verbatim_codes() {
    let sim = Simulator::start().await.unwrap();
    let issues = || {
        Health::Issues(vec![
            IssueSpec::new("AsgInstanceLaunchFailures", "cannot launch", &["asg-1"]),
            IssueSpec::new("SomeFutureCode", "new", &["r1", "r2"]),
        ])
    };
    let ng = key(Kind::NODEGROUP, "prod", "ng-general");
    sim.apply(Command::AddNodegroup {
        key: ng.clone(),
        status: "SOME_FUTURE_STATUS".into(),
        health: issues(),
        settings: NodegroupSettings {
            node_role: Some("arn:aws:iam::111122223333:role/nodes".into()),
            capacity_type: Some("SPOT".into()),
            release_version: Some("1.33.0-20250704".into()),
            scaling: Some(Scaling {
                min_size: 1,
                max_size: 10,
                desired_size: 4,
            }),
        },
    })
    .unwrap();
    let addon = key(Kind::ADDON, "prod", "vpc-cni");
    sim.apply(Command::AddAddon {
        key: addon.clone(),
        status: "DEGRADED".into(),
        health: issues(),
        addon_version: Some("v1.19.5-eksbuild.1".into()),
    })
    .unwrap();
    let capability = key(Kind::CAPABILITY, "prod", "argo");
    sim.apply(Command::AddCapability {
        key: capability.clone(),
        status: "NEW_CAPABILITY_STATUS".into(),
        health: Health::Issues(vec![IssueSpec::new(
            "AccessDenied",
            "no role",
            &["ignored"],
        )]),
        capability_type: Some("ARGOCD".into()),
        role_arn: Some("arn:aws:iam::111122223333:role/argo".into()),
    })
    .unwrap();
    sim.apply(Command::AddCluster {
        account_id: DEFAULT_ACCOUNT.into(),
        region: REGION.into(),
        cluster: "prod".into(),
        status: Some("UPDATING".into()),
        health: Some(Health::Issues(vec![IssueSpec::new(
            "KmsKeyDisabled",
            "key disabled",
            &["key-1"],
        )])),
        version: Some("1.32".into()),
        platform_version: Some("eks.14".into()),
    })
    .unwrap();
    let client = sim_client(&sim_target(&sim, REGION, "prod", &["*"])).await;
    let world = sim.with_world(|w| w.cluster(&cluster("prod")).unwrap().clone());

    let group = client
        .describe(Kind::NODEGROUP, "prod", "ng-general")
        .await
        .unwrap();
    let served = &world.nodegroups["ng-general"];
    assert_eq!(group.arn, served.arn);
    assert_eq!(
        group.created_at.as_millis(),
        (served.created_at * 1000.0).round() as i64
    );
    assert_eq!(group.status.as_str(), "SOME_FUTURE_STATUS");
    assert_eq!(
        info(&group, "node_role_arn"),
        Some("arn:aws:iam::111122223333:role/nodes")
    );
    assert_eq!(info(&group, "capacity_type"), Some("SPOT"));
    assert_eq!(info(&group, "release_version"), Some("1.33.0-20250704"));
    let sizes: Vec<(&str, i64)> = group.values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        sizes,
        [("desired_size", 4), ("max_size", 10), ("min_size", 1)]
    );
    let codes: Vec<&str> = group.issues.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, ["AsgInstanceLaunchFailures", "SomeFutureCode"]);
    assert!(Kind::NODEGROUP.knows_code(&group.issues[0].code));
    assert!(!Kind::NODEGROUP.knows_code(&group.issues[1].code));
    assert_eq!(group.issues[1].resource_ids, ["r1", "r2"]);

    let described = client
        .describe(Kind::ADDON, "prod", "vpc-cni")
        .await
        .unwrap();
    assert_eq!(described.arn, world.addons["vpc-cni"].arn);
    assert_eq!(described.status, Status::from_wire("DEGRADED"));
    assert_eq!(
        info(&described, "addon_version"),
        Some("v1.19.5-eksbuild.1")
    );
    assert_eq!(
        described.issues[1].code,
        IssueCode::from_wire("SomeFutureCode")
    );
    assert_eq!(described.issues[0].message, "cannot launch");
    assert!(described.values.is_empty());

    let described = client
        .describe(Kind::CLUSTER, "prod", "prod")
        .await
        .unwrap();
    assert_eq!(
        described.arn,
        "arn:aws:eks:us-east-1:111122223333:cluster/prod"
    );
    assert_eq!(described.status.as_str(), "UPDATING");
    assert_eq!(info(&described, "version"), Some("1.32"));
    assert_eq!(info(&described, "platform_version"), Some("eks.14"));
    assert_eq!(described.issues[0].code.as_str(), "KmsKeyDisabled");
    assert_eq!(described.issues[0].resource_ids, ["key-1"]);

    let described = client
        .describe(Kind::CAPABILITY, "prod", "argo")
        .await
        .unwrap();
    assert_eq!(described.arn, world.capabilities["argo"].arn);
    assert_eq!(described.status.as_str(), "NEW_CAPABILITY_STATUS");
    assert_eq!(
        info(&described, "role_arn"),
        Some("arn:aws:iam::111122223333:role/argo")
    );
    assert_eq!(described.issues[0].code.as_str(), "AccessDenied");
    assert_eq!(described.issues[0].message, "no role");
    // Capability issues carry code and message only.
    assert!(described.issues[0].resource_ids.is_empty());

    // A healthy node group: `health.issues` empty or no `health` at all.
    sim.add_resource(
        &key(Kind::NODEGROUP, "prod", "empty"),
        "ACTIVE",
        Health::Issues(vec![]),
    );
    sim.add_resource(
        &key(Kind::NODEGROUP, "prod", "absent"),
        "ACTIVE",
        Health::Absent,
    );
    for name in ["empty", "absent"] {
        let healthy = client
            .describe(Kind::NODEGROUP, "prod", name)
            .await
            .unwrap();
        assert!(healthy.issues.is_empty());
        assert_eq!(healthy.values["desired_size"], 2);
        assert_eq!(info(&healthy, "capacity_type"), Some("ON_DEMAND"));
    }
}

#[tokio::test]
async fn a_missing_cluster_or_resource_is_not_found() {
    let sim = Simulator::start().await.unwrap();
    sim.add_resource(&cluster("prod"), "ACTIVE", Health::Absent);
    let client = sim_client(&sim_target(&sim, REGION, "*", &["*"])).await;
    for kind in [
        Kind::NODEGROUP,
        Kind::ADDON,
        Kind::CAPABILITY,
        Kind::FARGATE_PROFILE,
    ] {
        let error = client.list_resources(kind, "gone", None).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound, "{kind}: {error}");
        assert_eq!(error.operation, kind.spec().list);
        let error = client.describe(kind, "gone", "x").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound, "{kind}: {error}");
        let error = client.describe(kind, "prod", "x").await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound, "{kind}: {error}");
        assert_eq!(error.operation, kind.spec().describe);
        // An empty cluster lists nothing.
        let page = client.list_resources(kind, "prod", None).await.unwrap();
        assert_eq!(page, Page::default());
    }
    let error = client
        .describe(Kind::CLUSTER, "gone", "gone")
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind, error.operation),
        (ErrorKind::NotFound, Operation::DescribeCluster)
    );
    assert!(
        sim.requests()
            .iter()
            .filter(|r| r.operation != Operation::GetCallerIdentity)
            .all(|r| r.status == 404 || r.status == 200)
    );

    // Deleted: the cluster and everything in it.
    sim.add_resource(
        &key(Kind::ADDON, "prod", "coredns"),
        "ACTIVE",
        Health::Absent,
    );
    assert!(
        client
            .describe(Kind::ADDON, "prod", "coredns")
            .await
            .is_ok()
    );
    sim.apply(Command::DeleteResource {
        key: cluster("prod"),
    })
    .unwrap();
    let error = client
        .describe(Kind::ADDON, "prod", "coredns")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
    let error = client
        .describe(Kind::CLUSTER, "prod", "prod")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn faults_are_scoped_per_operation_and_per_resource() {
    let sim = Simulator::start().await.unwrap();
    for kind in [
        Kind::NODEGROUP,
        Kind::ADDON,
        Kind::CAPABILITY,
        Kind::FARGATE_PROFILE,
    ] {
        for name in ["a", "b"] {
            sim.add_resource(&key(kind, "prod", name), "ACTIVE", Health::Absent);
        }
    }
    let client = sim_client(&sim_target(&sim, REGION, "prod", &["*"])).await;
    sim.add_fault(
        Scope::all().operations(&[Operation::DescribeNodegroup]),
        FaultKind::Throttle,
        None,
    );
    for name in ["a", "b"] {
        let error = client
            .describe(Kind::NODEGROUP, "prod", name)
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Throttled);
    }
    assert!(
        client
            .list_resources(Kind::NODEGROUP, "prod", None)
            .await
            .is_ok()
    );
    for kind in [Kind::ADDON, Kind::CAPABILITY, Kind::FARGATE_PROFILE] {
        assert!(client.describe(kind, "prod", "a").await.is_ok(), "{kind}");
        assert!(
            client.list_resources(kind, "prod", None).await.is_ok(),
            "{kind}"
        );
    }
    assert!(client.describe(Kind::CLUSTER, "prod", "prod").await.is_ok());
    assert!(client.list_clusters(None).await.is_ok());
    sim.apply(Command::ClearFaults).unwrap();

    // One add-on's describe fails; the other add-on, and a node group of the same name, do not.
    sim.add_fault(
        Scope::resource(&key(Kind::ADDON, "prod", "a")),
        FaultKind::ServerError,
        None,
    );
    let error = client.describe(Kind::ADDON, "prod", "a").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Server);
    assert!(client.describe(Kind::ADDON, "prod", "b").await.is_ok());
    assert!(client.describe(Kind::NODEGROUP, "prod", "a").await.is_ok());
    assert!(
        client
            .list_resources(Kind::ADDON, "prod", None)
            .await
            .is_ok()
    );
    sim.apply(Command::ClearFaults).unwrap();

    // The cluster's own describe, by operation; malformed answers to a list.
    sim.add_fault(
        Scope::resource(&cluster("prod")),
        FaultKind::AccessDenied,
        Some(1),
    );
    sim.add_fault(
        Scope::all().operations(&[Operation::ListCapabilities]),
        FaultKind::Malformed,
        Some(1),
    );
    let error = client
        .describe(Kind::CLUSTER, "prod", "prod")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::AccessDenied);
    assert!(
        client
            .describe(Kind::FARGATE_PROFILE, "prod", "a")
            .await
            .is_ok()
    );
    let error = client
        .list_resources(Kind::CAPABILITY, "prod", None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Malformed);
    assert!(client.describe(Kind::CLUSTER, "prod", "prod").await.is_ok());
    assert!(
        client
            .list_resources(Kind::CAPABILITY, "prod", None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_control_api_scripts_every_kind() {
    let sim = Simulator::start().await.unwrap();
    let control = sim.control_addr();
    let at = json!({"account_id": DEFAULT_ACCOUNT, "region": REGION, "cluster": "prod"});
    let with = |fields: serde_json::Value| {
        let mut command = at.clone();
        command
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        command
    };
    let post = |body: serde_json::Value| async move {
        http(control, "POST", "/v1/commands", &body.to_string()).await
    };
    let commands = json!([
        with(json!({"op": "add_cluster", "version": "1.31", "platform_version": "eks.30"})),
        with(
            json!({"op": "add_nodegroup", "nodegroup": "ng", "capacity_type": "SPOT",
                    "scaling": {"min_size": 0, "max_size": 5, "desired_size": 3}})
        ),
        with(json!({"op": "add_addon", "addon": "coredns", "addon_version": "v1.11.4-eksbuild.2"})),
        with(json!({"op": "add_capability", "capability": "ack", "capability_type": "ACK"})),
        with(
            json!({"op": "set_resource_health", "kind": "nodegroup", "name": "ng",
                    "health": {"type": "issues", "issues": [
                        {"code": "BrandNewCode", "message": "m", "resource_ids": ["i-1"]}]}})
        ),
        with(json!({"op": "set_resource_status", "kind": "cluster", "status": "FAILED"})),
        with(
            json!({"op": "set_scaling", "nodegroup": "ng", "min_size": 1, "max_size": 6,
                    "desired_size": 6})
        ),
        with(
            json!({"op": "set_version", "kind": "addon", "name": "coredns",
                    "version": "v1.12.0-eksbuild.1"})
        ),
    ]);
    let (status, body) = post(commands).await;
    assert_eq!((status, body.as_str()), (200, r#"{"applied":8}"#));

    let client = sim_client(&sim_target(&sim, REGION, "prod", &["*"])).await;
    let group = client
        .describe(Kind::NODEGROUP, "prod", "ng")
        .await
        .unwrap();
    assert_eq!(group.issues[0].code.as_str(), "BrandNewCode");
    assert_eq!(group.values["desired_size"], 6);
    assert_eq!(info(&group, "capacity_type"), Some("SPOT"));
    let described = client
        .describe(Kind::CLUSTER, "prod", "prod")
        .await
        .unwrap();
    assert_eq!(described.status.as_str(), "FAILED");
    assert_eq!(info(&described, "platform_version"), Some("eks.30"));
    let addon = client
        .describe(Kind::ADDON, "prod", "coredns")
        .await
        .unwrap();
    assert_eq!(info(&addon, "addon_version"), Some("v1.12.0-eksbuild.1"));

    // Re-created: a new ARN and a later creation time, ACTIVE and healthy.
    let (status, _) = post(with(
        json!({"op": "recreate_resource", "kind": "nodegroup", "name": "ng"}),
    ))
    .await;
    assert_eq!(status, 200);
    let recreated = client
        .describe(Kind::NODEGROUP, "prod", "ng")
        .await
        .unwrap();
    assert_ne!(recreated.arn, group.arn);
    assert!(recreated.created_at > group.created_at);
    assert_eq!(recreated.status.as_str(), "ACTIVE");
    assert!(recreated.issues.is_empty());

    // Deleted; a command on what is gone is refused; a bad kind is a bad command.
    let (status, _) = post(with(
        json!({"op": "delete_resource", "kind": "capability", "name": "ack"}),
    ))
    .await;
    assert_eq!(status, 200);
    let error = client
        .describe(Kind::CAPABILITY, "prod", "ack")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
    let (status, body) = post(with(
        json!({"op": "set_resource_status", "kind": "capability",
                                          "name": "ack", "status": "ACTIVE"}),
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = post(with(
        json!({"op": "delete_resource", "kind": "pod", "name": "x"}),
    ))
    .await;
    assert_eq!(status, 400);

    let (status, body) = http(control, "GET", "/v1/stats", "").await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        stats["resources"],
        json!({"addon": 1, "capability": 0, "cluster": 1, "fargate_profile": 0, "nodegroup": 1})
    );
    let (status, body) = http(control, "GET", "/v1/resources", "").await;
    assert_eq!(status, 200);
    let resources: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = resources
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["cluster", "nodegroup", "addon"]);
}
