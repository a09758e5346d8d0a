//! The built-in kinds (DESIGN.md "Resource kinds"): their names, statuses, codes and hints.
//!
//! Known codes are the SDK enums' (FargateProfileIssueCode, NodegroupIssueCode,
//! AddonIssueCode, ClusterIssueCode, CapabilityIssueCode of aws-sdk-eks 1.160); the hints say
//! what to check first, from the EKS API reference's meaning of each code.

use super::{KindSpec, Operation};

pub(super) static FARGATE_PROFILE: KindSpec = KindSpec {
    name: "fargate_profile",
    title: "Fargate profile",
    alert_name: "FargateProfile",
    metric_prefix: "eks_fargate_profile",
    name_label: Some("fargate_profile"),
    list: Operation::ListFargateProfiles,
    describe: Operation::DescribeFargateProfile,
    statuses: &[
        "CREATING",
        "ACTIVE",
        "DELETING",
        "CREATE_FAILED",
        "DELETE_FAILED",
    ],
    alert_worthy: &["CREATE_FAILED", "DELETE_FAILED"],
    codes: &[
        "PodExecutionRoleAlreadyInUse",
        "AccessDenied",
        "ClusterUnreachable",
        "InternalFailure",
    ],
    noun: "profile",
    plural: "profiles",
    console_path: Some("fargate-profiles"),
    hints: &[
        (
            "PodExecutionRoleAlreadyInUse",
            "Another profile uses the same pod execution role: give each profile its own, or delete and re-create this one.",
        ),
        (
            "AccessDenied",
            "EKS cannot assume the pod execution role: check the role exists and its trust policy allows eks-fargate-pods.amazonaws.com.",
        ),
        (
            "ClusterUnreachable",
            "Fargate cannot reach the cluster's API server: check the subnets' routes, NAT and security groups, and the endpoint access settings.",
        ),
        (
            "InternalFailure",
            "An internal AWS failure: wait for it to clear; if it persists, re-create the profile or open an AWS support case.",
        ),
    ],
    fallback_hint: "A code this version does not know: see the message and the EKS documentation for Fargate profile health issues.",
};

pub(super) static NODEGROUP: KindSpec = KindSpec {
    name: "nodegroup",
    title: "Node group",
    alert_name: "Nodegroup",
    metric_prefix: "eks_nodegroup",
    name_label: Some("eks_nodegroup"),
    list: Operation::ListNodegroups,
    describe: Operation::DescribeNodegroup,
    statuses: &[
        "CREATING",
        "ACTIVE",
        "UPDATING",
        "DELETING",
        "CREATE_FAILED",
        "DELETE_FAILED",
        "DEGRADED",
    ],
    alert_worthy: &["CREATE_FAILED", "DELETE_FAILED", "DEGRADED"],
    codes: &[
        "AccessDenied",
        "AmiIdNotFound",
        "AsgInstanceLaunchFailures",
        "AutoScalingGroupInstanceRefreshActive",
        "AutoScalingGroupInvalidConfiguration",
        "AutoScalingGroupNotFound",
        "AutoScalingGroupOptInRequired",
        "AutoScalingGroupRateLimitExceeded",
        "ClusterUnreachable",
        "Ec2InstanceTypeDoesNotExist",
        "Ec2LaunchTemplateDeletionFailure",
        "Ec2LaunchTemplateInvalidConfiguration",
        "Ec2LaunchTemplateMaxLimitExceeded",
        "Ec2LaunchTemplateNotFound",
        "Ec2LaunchTemplateVersionMaxLimitExceeded",
        "Ec2LaunchTemplateVersionMismatch",
        "Ec2SecurityGroupDeletionFailure",
        "Ec2SecurityGroupNotFound",
        "Ec2SubnetInvalidConfiguration",
        "Ec2SubnetListTooLong",
        "Ec2SubnetMissingIpv6Assignment",
        "Ec2SubnetNotFound",
        "IamInstanceProfileNotFound",
        "IamLimitExceeded",
        "IamNodeRoleNotFound",
        "IamThrottling",
        "InstanceLimitExceeded",
        "InsufficientFreeAddresses",
        "InternalFailure",
        "KubernetesLabelInvalid",
        "LimitExceeded",
        "NodeCreationFailure",
        "NodeTerminationFailure",
        "PodEvictionFailure",
        "SourceEc2LaunchTemplateNotFound",
        "Unknown",
    ],
    noun: "node group",
    plural: "node groups",
    console_path: Some("nodegroups"),
    hints: &[
        (
            "AccessDenied",
            "An IAM policy denies an action EKS needs for the node group: check the node role and the cluster's service-linked role.",
        ),
        (
            "AmiIdNotFound",
            "The AMI of the launch template does not exist (deleted, or in another region): point the template at an existing AMI.",
        ),
        (
            "AsgInstanceLaunchFailures",
            "The Auto Scaling group cannot launch instances: see its activity history (capacity, quotas, launch template, subnets).",
        ),
        (
            "AutoScalingGroupInstanceRefreshActive",
            "An instance refresh runs on the Auto Scaling group: wait for it to finish, or cancel it, before updating the node group.",
        ),
        (
            "AutoScalingGroupInvalidConfiguration",
            "The Auto Scaling group's configuration is not what EKS manages: undo changes made to it outside EKS.",
        ),
        (
            "AutoScalingGroupNotFound",
            "The node group's Auto Scaling group was deleted: re-create the node group.",
        ),
        (
            "AutoScalingGroupOptInRequired",
            "The account must opt in to an Auto Scaling feature the node group uses (a region or instance type): opt in, or change it.",
        ),
        (
            "AutoScalingGroupRateLimitExceeded",
            "Auto Scaling throttles the account's calls: reduce other automation calling Auto Scaling, then retry.",
        ),
        (
            "ClusterUnreachable",
            "The nodes cannot reach the cluster's API server: check the subnets' routes, NAT, security groups and endpoint access.",
        ),
        (
            "Ec2InstanceTypeDoesNotExist",
            "An instance type of the node group is not offered in its availability zones: choose types offered there.",
        ),
        (
            "Ec2LaunchTemplateDeletionFailure",
            "EKS could not delete the launch template it created: check for a policy that denies ec2:DeleteLaunchTemplate.",
        ),
        (
            "Ec2LaunchTemplateInvalidConfiguration",
            "The launch template has settings EKS does not allow for managed nodes: fix the template and update the node group.",
        ),
        (
            "Ec2LaunchTemplateMaxLimitExceeded",
            "The account has reached its limit of launch templates: delete unused ones or raise the quota.",
        ),
        (
            "Ec2LaunchTemplateNotFound",
            "The node group's launch template was deleted: restore it or update the node group to another template.",
        ),
        (
            "Ec2LaunchTemplateVersionMaxLimitExceeded",
            "The launch template has reached its limit of versions: delete old versions of it.",
        ),
        (
            "Ec2LaunchTemplateVersionMismatch",
            "The launch template version of the Auto Scaling group differs from the node group's: update the node group to it.",
        ),
        (
            "Ec2SecurityGroupDeletionFailure",
            "EKS could not delete the node group's remote-access security group: remove what still references it.",
        ),
        (
            "Ec2SecurityGroupNotFound",
            "A security group of the node group (or its launch template) was deleted: restore it or update the node group.",
        ),
        (
            "Ec2SubnetInvalidConfiguration",
            "A subnet of the node group does not assign public IPs, or lacks a route the nodes need: fix the subnet's settings.",
        ),
        (
            "Ec2SubnetListTooLong",
            "The node group names more subnets than EKS allows: name fewer.",
        ),
        (
            "Ec2SubnetMissingIpv6Assignment",
            "An IPv6 cluster's subnet does not assign IPv6 addresses: enable IPv6 address assignment on the subnet.",
        ),
        (
            "Ec2SubnetNotFound",
            "A subnet of the node group was deleted: update the node group to existing subnets.",
        ),
        (
            "IamInstanceProfileNotFound",
            "The node role's instance profile was deleted: re-create it for the node role.",
        ),
        (
            "IamLimitExceeded",
            "The account has reached an IAM limit (instance profiles or roles): delete unused ones or raise the quota.",
        ),
        (
            "IamNodeRoleNotFound",
            "The node role was deleted: re-create the role, or re-create the node group with an existing role.",
        ),
        (
            "IamThrottling",
            "IAM throttles the account's calls: reduce other automation calling IAM, then retry.",
        ),
        (
            "InstanceLimitExceeded",
            "The account has reached its EC2 instance quota for the type: raise the quota or choose another instance type.",
        ),
        (
            "InsufficientFreeAddresses",
            "The node group's subnets have no free IP addresses left: add subnets or free addresses.",
        ),
        (
            "InternalFailure",
            "An internal AWS failure: wait for it to clear; if it persists, open an AWS support case.",
        ),
        (
            "KubernetesLabelInvalid",
            "A Kubernetes label of the node group is not valid: fix its key or value.",
        ),
        (
            "LimitExceeded",
            "The node group exceeds a limit (nodes per group, groups per cluster): scale down or raise the quota.",
        ),
        (
            "NodeCreationFailure",
            "Instances launched but could not join the cluster: check the node role's policies, the aws-auth or access entries, and networking.",
        ),
        (
            "NodeTerminationFailure",
            "EKS could not terminate instances of the node group: check for termination protection or a policy that denies it.",
        ),
        (
            "PodEvictionFailure",
            "Pods could not be drained from nodes being replaced: check pod disruption budgets, or force the update.",
        ),
        (
            "SourceEc2LaunchTemplateNotFound",
            "The launch template the node group was created from was deleted: restore it or update the node group.",
        ),
        (
            "Unknown",
            "EKS reports an unknown problem: see the message, the Auto Scaling group's activity and the nodes' logs.",
        ),
    ],
    fallback_hint: "A code this version does not know: see the message and the EKS documentation for node group health issues.",
};

pub(super) static ADDON: KindSpec = KindSpec {
    name: "addon",
    title: "Add-on",
    alert_name: "Addon",
    metric_prefix: "eks_addon",
    name_label: Some("eks_addon"),
    list: Operation::ListAddons,
    describe: Operation::DescribeAddon,
    statuses: &[
        "CREATING",
        "ACTIVE",
        "CREATE_FAILED",
        "UPDATING",
        "DELETING",
        "DELETE_FAILED",
        "DEGRADED",
        "UPDATE_FAILED",
    ],
    alert_worthy: &[
        "CREATE_FAILED",
        "DELETE_FAILED",
        "DEGRADED",
        "UPDATE_FAILED",
    ],
    codes: &[
        "AccessDenied",
        "AddonPermissionFailure",
        "AddonSubscriptionNeeded",
        "AdmissionRequestDenied",
        "ClusterUnreachable",
        "ConfigurationConflict",
        "InsufficientNumberOfReplicas",
        "InternalFailure",
        "K8sResourceNotFound",
        "UnsupportedAddonModification",
    ],
    noun: "add-on",
    plural: "add-ons",
    console_path: Some("add-ons"),
    hints: &[
        (
            "AccessDenied",
            "The add-on's IAM role (IRSA or Pod Identity) lacks a permission it needs: check the role's policies and trust.",
        ),
        (
            "AddonPermissionFailure",
            "EKS lacks a Kubernetes permission to manage the add-on: check the eks:addon-manager RBAC and access entries.",
        ),
        (
            "AddonSubscriptionNeeded",
            "The add-on is from AWS Marketplace and the account is not subscribed: subscribe, or remove the add-on.",
        ),
        (
            "AdmissionRequestDenied",
            "An admission webhook or policy engine denied the add-on's resources: allow them in the policy.",
        ),
        (
            "ClusterUnreachable",
            "EKS cannot reach the cluster's API server to manage the add-on: check the endpoint access and the control plane.",
        ),
        (
            "ConfigurationConflict",
            "Fields of the add-on's resources were changed outside EKS: update with resolveConflicts OVERWRITE or PRESERVE.",
        ),
        (
            "InsufficientNumberOfReplicas",
            "Too few of the add-on's pods are ready: check their events, node capacity, taints and the pods' logs.",
        ),
        (
            "InternalFailure",
            "An internal AWS failure: wait for it to clear; if it persists, open an AWS support case.",
        ),
        (
            "K8sResourceNotFound",
            "A Kubernetes resource of the add-on was deleted: update the add-on to re-create it.",
        ),
        (
            "UnsupportedAddonModification",
            "The add-on's resources were changed in a way EKS cannot reconcile: undo the change or re-create the add-on.",
        ),
    ],
    fallback_hint: "A code this version does not know: see the message and the EKS documentation for add-on health issues.",
};

pub(super) static CLUSTER: KindSpec = KindSpec {
    name: "cluster",
    title: "Cluster",
    alert_name: "Cluster",
    metric_prefix: "eks_cluster",
    name_label: None,
    list: Operation::ListClusters,
    describe: Operation::DescribeCluster,
    statuses: &[
        "CREATING", "ACTIVE", "DELETING", "FAILED", "UPDATING", "PENDING",
    ],
    alert_worthy: &["FAILED"],
    codes: &[
        "AccessDenied",
        "ClusterUnreachable",
        "ConfigurationConflict",
        "Ec2SecurityGroupNotFound",
        "Ec2ServiceNotSubscribed",
        "Ec2SubnetNotFound",
        "IamRoleNotFound",
        "InsufficientFreeAddresses",
        "InternalFailure",
        "KmsGrantRevoked",
        "KmsKeyDisabled",
        "KmsKeyMarkedForDeletion",
        "KmsKeyNotFound",
        "Other",
        "ResourceLimitExceeded",
        "ResourceNotFound",
        "StsRegionalEndpointDisabled",
        "UnsupportedVersion",
        "VpcNotFound",
    ],
    noun: "cluster",
    plural: "clusters",
    console_path: None,
    hints: &[
        (
            "AccessDenied",
            "The cluster role lacks a permission EKS needs: check the cluster IAM role's policies (AmazonEKSClusterPolicy).",
        ),
        (
            "ClusterUnreachable",
            "EKS cannot reach the cluster's API server: check the control plane's subnets, security groups and endpoint access.",
        ),
        (
            "ConfigurationConflict",
            "The cluster's configuration conflicts with a change made outside EKS: see the message and undo the change.",
        ),
        (
            "Ec2SecurityGroupNotFound",
            "The cluster's security group was deleted: re-create it, or re-create the cluster.",
        ),
        (
            "Ec2ServiceNotSubscribed",
            "The account is not subscribed to EC2: finish the account's setup for EC2.",
        ),
        (
            "Ec2SubnetNotFound",
            "A subnet of the cluster was deleted: update the cluster's VPC configuration to existing subnets.",
        ),
        (
            "IamRoleNotFound",
            "The cluster IAM role was deleted: re-create the role with the same name and trust for eks.amazonaws.com.",
        ),
        (
            "InsufficientFreeAddresses",
            "The cluster's subnets have too few free IP addresses for the control plane: free addresses or add subnets.",
        ),
        (
            "InternalFailure",
            "An internal AWS failure: wait for it to clear; if it persists, open an AWS support case.",
        ),
        (
            "KmsGrantRevoked",
            "The grant that lets EKS use the secrets encryption key was revoked: restore the grant.",
        ),
        (
            "KmsKeyDisabled",
            "The secrets encryption KMS key is disabled: enable it, or the cluster cannot read its secrets.",
        ),
        (
            "KmsKeyMarkedForDeletion",
            "The secrets encryption KMS key is scheduled for deletion: cancel the deletion now.",
        ),
        (
            "KmsKeyNotFound",
            "The secrets encryption KMS key does not exist any more: the cluster cannot decrypt its secrets; contact AWS support.",
        ),
        (
            "Other",
            "EKS reports a problem with no specific code: see the message.",
        ),
        (
            "ResourceLimitExceeded",
            "The account has reached a limit the cluster needs (ENIs, addresses): raise the quota or free resources.",
        ),
        (
            "ResourceNotFound",
            "A resource the cluster depends on was deleted: see the message for which one.",
        ),
        (
            "StsRegionalEndpointDisabled",
            "The STS regional endpoint is disabled for the region: activate it in the account's IAM settings.",
        ),
        (
            "UnsupportedVersion",
            "The cluster's Kubernetes version is no longer supported: upgrade the cluster.",
        ),
        (
            "VpcNotFound",
            "The cluster's VPC was deleted: the cluster cannot work; re-create it in an existing VPC.",
        ),
    ],
    fallback_hint: "A code this version does not know: see the message and the EKS documentation for cluster health issues.",
};

pub(super) static CAPABILITY: KindSpec = KindSpec {
    name: "capability",
    title: "Capability",
    alert_name: "Capability",
    metric_prefix: "eks_capability",
    name_label: Some("eks_capability"),
    list: Operation::ListCapabilities,
    describe: Operation::DescribeCapability,
    statuses: &[
        "CREATING",
        "ACTIVE",
        "UPDATING",
        "DELETING",
        "CREATE_FAILED",
        "DELETE_FAILED",
        "DEGRADED",
    ],
    alert_worthy: &["CREATE_FAILED", "DELETE_FAILED", "DEGRADED"],
    codes: &["AccessDenied", "ClusterUnreachable"],
    noun: "capability",
    plural: "capabilities",
    console_path: Some("capabilities"),
    hints: &[
        (
            "AccessDenied",
            "The capability's IAM role lacks a permission it needs: check the role's policies and trust.",
        ),
        (
            "ClusterUnreachable",
            "The capability cannot reach the cluster's API server: check the endpoint access and the control plane.",
        ),
    ],
    fallback_hint: "A code this version does not know: see the message and the EKS documentation for capability health issues.",
};
