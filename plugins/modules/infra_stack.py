#!/usr/bin/python
# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: infra_stack
short_description: The cluster's infrastructure stack (VPC, security groups, FSx, monitoring)
version_added: 0.1.0
description:
  - Creates, updates, reads or deletes the CloudFormation stack that holds a ParallelCluster
    cluster's infrastructure, from the template shipped in this collection
    (C(files/cloudformation/infra.yaml)) - VPC with a secondary CIDR, public and private subnets in
    one or two Availability Zones, NAT, S3 endpoint, security groups for head, login, compute, FSx
    and monitoring nodes, FSx for Lustre or an existing file system, a bucket for node assets, and
    the monitoring option.
  - Every template parameter is a typed option; an option left unset takes the template's default,
    which is sent explicitly so that a later run that drops the option resets the value.
  - Creates and updates go through CloudFormation change sets (a CREATE change set for a new
    stack). In check mode the change set is created, described and deleted, so the prediction is
    CloudFormation's own; the change set of a new stack lists every resource, and the empty stack
    that such a change set leaves in REVIEW_IN_PROGRESS is deleted too. With C(--diff) the result
    shows the parameters and tags before and after and the list of resource changes.
  - Nothing is sent to CloudFormation when the deployed template body, parameters (numbers compared
    as normalised strings) and tags are already the requested ones; when CloudFormation reports
    that a change set contains no changes, the change set is deleted and the task reports no change.
  - Every wait ends at O(wait_timeout) and records progress lines (stack status and latest event)
    in RV(events). When an operation fails, the result names the first failing resource and its
    reason.
  - A stack whose creation failed (V(ROLLBACK_COMPLETE), V(ROLLBACK_FAILED), V(CREATE_FAILED))
    cannot be updated; it is deleted and created again only with O(replace_failed_stack=true).
  - The action plugin of the same name reads the template on the controller and passes its text to
    the module. CloudFormation takes at most 51,200 bytes of template in a request; a larger one
    (the collection's is) goes through the S3 bucket named by O(template_bucket).
options:
  name:
    description:
      - Name of the CloudFormation stack, for example V(mycluster-infra).
    type: str
    required: true
  state:
    description:
      - V(present) creates the stack or updates it to the requested template, parameters and tags.
      - V(absent) deletes the stack and waits until it is gone.
      - V(read) returns an existing stack's status, parameters and outputs without changing
        anything; it fails when the stack does not exist.
    type: str
    choices: [present, absent, read]
    default: present
  cluster_name:
    description:
      - Cluster name (template parameter C(ClusterName)); resources are named and tagged with it.
      - Required when O(state=present).
    type: str
  availability_zones:
    description:
      - One or two Availability Zones (template parameters C(PrimaryAz) and C(SecondaryAz)).
      - The first holds the head node and compute subnets. A second is required for
        O(monitoring.type=self-hosting) (its load balancer spans two zones).
      - Required when O(state=present).
    type: list
    elements: str
  vpc_cidr:
    description:
      - Primary CIDR of the VPC, a C(/16) (template parameter C(VpcCidr); template default
        V(10.0.0.0/16)). Public subnets are carved from it.
    type: str
  secondary_cidr:
    description:
      - Secondary CIDR of the VPC for the private subnets, a C(/16) other than O(vpc_cidr)
        (template parameter C(SecondaryCidr); template default V(10.1.0.0/16)).
      - An empty string carves the private subnets from O(vpc_cidr) instead (the configuration the
        local AWS emulator can deploy).
    type: str
  nat_gateways:
    description:
      - V(single) NAT gateway, or V(per-az) (one per Availability Zone, survives a zone outage;
        template parameter C(NatGateways)).
    type: str
    choices: [single, per-az]
  ssh_allowed_cidr:
    description:
      - IPv4 CIDR allowed to reach the login nodes over SSH (template parameter C(SshAllowedCidr)).
        There is no default open to the world; prefixes shorter than C(/8), V(0.0.0.0/0) among
        them, are refused.
      - Required when O(state=present).
    type: str
  monitoring_allowed_cidr:
    description:
      - IPv4 CIDR allowed to reach the self-hosted Grafana load balancer (template parameter
        C(MonitoringAllowedCidr); template default empty). Required with
        O(monitoring.type=self-hosting) and refused with the other types.
    type: str
  s3_endpoint_extra_resources:
    description:
      - S3 ARNs the nodes may use through the VPC's S3 gateway endpoint besides the cluster's own
        bucket, for example your training data (V(arn:aws:s3:::my-data) and
        V(arn:aws:s3:::my-data/*)); template parameter C(S3EndpointExtraResources), joined with
        commas.
    type: list
    elements: str
  fsx:
    description:
      - FSx for Lustre file system mounted at C(/fsx) - either an existing one (O(fsx.existing_id)),
        or a new one described by the other suboptions.
    type: dict
    suboptions:
      existing_id:
        description:
          - Id of an existing FSx for Lustre file system (C(fs-...)) to use instead of creating one
            (template parameter C(ExistingFsxId)).
          - Mutually exclusive with the suboptions that describe a new file system.
        type: str
      create:
        description:
          - Whether a new file system is created when O(fsx.existing_id) is not given (template
            parameter C(CreateFsx); template default V(true)). V(false) gives a cluster without
            Lustre.
        type: bool
      deployment_type:
        description:
          - Deployment type of a new file system (template parameter C(FsxDeploymentType)).
        type: str
        choices: [PERSISTENT_2, PERSISTENT_1]
      storage_capacity:
        description:
          - Storage capacity in GiB (template parameter C(FsxStorageCapacity); template default
            1200). V(1200) or a multiple of V(2400).
        type: int
      throughput_per_tib:
        description:
          - Throughput per TiB of storage in MB/s (template parameter C(FsxThroughputPerTiB);
            template default 250). V(125), V(250), V(500) or V(1000) for V(PERSISTENT_2);
            V(50), V(100) or V(200) for V(PERSISTENT_1).
        type: int
        choices: [50, 100, 125, 200, 250, 500, 1000]
      compression:
        description:
          - Data compression of a new file system (template parameter C(FsxDataCompression)).
        type: str
        choices: [LZ4, NONE]
      lustre_version:
        description:
          - Lustre version of a new file system (template parameter C(FsxLustreVersion)). Quote it
            in YAML (V("2.15")).
        type: str
        choices: ["2.15", "2.12"]
  monitoring:
    description:
      - Monitoring option and its settings.
    type: dict
    suboptions:
      type:
        description:
          - V(none), V(self-hosting) (Prometheus and Grafana on an EC2 instance in a private
            subnet behind a load balancer), V(amp-only) (Amazon Managed Service for Prometheus
            workspace and policies) or V(amp+amg) (also Amazon Managed Grafana); template parameter
            C(MonitoringType).
          - V(amp) is the legacy spelling of V(amp-only); it is accepted with a deprecation warning
            and will be removed in 2.0.0.
        type: str
        choices: [none, self-hosting, amp-only, amp+amg, amp]
      instance_type:
        description:
          - Instance type of the self-hosted monitoring node (template parameter
            C(MonitoringInstanceType); template default V(t3.medium)).
        type: str
      image_id:
        description:
          - Name of the SSM parameter that holds the AMI of the self-hosted monitoring node
            (template parameter C(MonitoringImageId); template default the latest Amazon Linux 2023
            for x86_64). To pin an AMI, store its id in an SSM parameter of your own.
        type: str
      volume_size:
        description:
          - Root volume size in GiB of the self-hosted monitoring node, which holds the Prometheus
            data (template parameter C(MonitoringVolumeSize); template default 50).
        type: int
      certificate_arn:
        description:
          - ACM certificate for the HTTPS listener of the self-hosted Grafana load balancer
            (template parameter C(CertificateArn)); HTTP then redirects to HTTPS. Only with
            O(monitoring.type=self-hosting).
        type: str
      amg_authentication:
        description:
          - Authentication provider of the Amazon Managed Grafana workspace (template parameter
            C(AmgAuthenticationProvider)).
        type: str
        choices: [AWS_SSO, SAML]
  tags:
    description:
      - Tags of the stack, which CloudFormation propagates to the resources it creates.
      - When set, the stack's tags become exactly these (an empty dict removes them all); when
        unset, the stack's tags are left as they are.
    type: dict
  template:
    description:
      - Path of a CloudFormation template to use instead of the collection's
        C(files/cloudformation/infra.yaml). The action plugin resolves it on the controller like
        the C(src) of M(ansible.builtin.copy) (role C(files/), playbook directory).
    type: path
  template_body:
    description:
      - Template text. Internal, set by the action plugin from O(template) or the collection's
        template; set it yourself only when calling the module without its action plugin.
    type: str
  template_bucket:
    description:
      - S3 bucket, in the stack's region, that the template is uploaded to before CloudFormation
        reads it from there (C(TemplateURL)). Needed when the template is larger than the
        51,200 bytes CloudFormation takes in a request; the collection's template is.
      - The object key is C(xpu-parallelcluster/cloudformation/<name>/<sha256 of the text>.yaml);
        the same text is uploaded once. It is uploaded only when the template has to be sent,
        also in check mode (the change set preview reads it).
      - Needs C(s3:PutObject) and C(s3:GetObject) on the objects.
    type: str
  replace_failed_stack:
    description:
      - Whether a stack whose creation failed (V(ROLLBACK_COMPLETE), V(ROLLBACK_FAILED) or
        V(CREATE_FAILED)) is deleted and created again. When V(false), the task fails naming the
        state and the cause of the failed creation.
    type: bool
    default: false
  termination_protection:
    description:
      - Enable or disable termination protection. Unset leaves it as it is.
      - With O(state=absent), V(false) disables protection before deleting; a protected stack is
        otherwise not deleted.
    type: bool
  empty_buckets:
    description:
      - With O(state=absent), empty the S3 buckets the stack created (its C(AWS::S3::Bucket)
        resources, except those whose C(DeletionPolicy) keeps them) before deleting the stack,
        removing every object version and delete marker. CloudFormation cannot delete a bucket
        that holds objects, and the node assets bucket is versioned and filled by the cluster
        stage.
      - In check mode the objects are counted, not deleted (RV(emptied_buckets), and the diff).
      - V(false) leaves the buckets as they are; the deletion then fails on a bucket that is not
        empty, naming it.
      - Needs C(s3:ListBucketVersions), C(s3:DeleteObject) and C(s3:DeleteObjectVersion) on them.
    type: bool
    default: true
  use_change_sets:
    description:
      - Whether creates and updates are executed through change sets (the default, and the way to
        use AWS).
      - V(false) calls CreateStack and UpdateStack instead. It exists for the local AWS emulator
        (moto), which does not compute outputs when it executes a change set. Check mode still
        previews with a change set.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds the module waits in total for CloudFormation (change sets, an operation
        already running, creation, update, deletion). When it runs out the task fails and the
        operation carries on in CloudFormation; a re-run waits for it.
    type: int
    default: 3600
  capabilities:
    description:
      - Capabilities granted to CloudFormation (the template creates IAM policies and roles).
    type: list
    elements: str
    choices: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND]
    default: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM]
notes:
  - Check mode is supported and asks CloudFormation for a change set. Some things it cannot
    preview; for a failed stack that O(replace_failed_stack) would replace it reports the
    replacement without a change set, since the failed stack still holds the name.
  - The local AWS emulator (moto) lists no C(Modify) changes in an UPDATE change set; RV(diff)
    still shows the parameters that change.
  - Belongs to the action group C(xpu.parallelcluster.aws), which extends C(amazon.aws.aws).
author:
  - xpu.parallelcluster contributors
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Creates a change set, returns its changes and deletes it.
  diff_mode:
    support: full
    description: Parameters and tags before and after, and the change set's resource changes.
  platform:
    platforms: all
    description: Runs where the AWS API is reachable, usually the controller.
"""

EXAMPLES = r"""
- name: Create or update the infrastructure of cluster ml1 (one Availability Zone, existing FSx)
  xpu.parallelcluster.infra_stack:
    name: ml1-infra
    region: us-east-1
    cluster_name: ml1
    availability_zones: [us-east-1a]
    ssh_allowed_cidr: 203.0.113.0/24
    fsx:
      existing_id: fs-0123456789abcdef0
    monitoring:
      type: none
    tags:
      team: ml-platform
  register: infra

- name: Use the stack outputs
  ansible.builtin.debug:
    msg: "VPC {{ infra.outputs.VpcId }}, head node subnet {{ infra.outputs.HeadNodeSubnetId }}"

- name: New FSx file system, managed Prometheus and Grafana, two zones
  xpu.parallelcluster.infra_stack:
    name: ml2-infra
    cluster_name: ml2
    availability_zones: [us-east-1a, us-east-1b]
    ssh_allowed_cidr: 203.0.113.0/24
    nat_gateways: per-az
    fsx:
      deployment_type: PERSISTENT_2
      storage_capacity: 4800
      throughput_per_tib: 500
      compression: LZ4
      lustre_version: "2.15"
    monitoring:
      type: amp+amg
      amg_authentication: AWS_SSO
    termination_protection: true

- name: Preview a change (run the play with --check --diff)
  xpu.parallelcluster.infra_stack:
    name: ml1-infra
    cluster_name: ml1
    availability_zones: [us-east-1a]
    ssh_allowed_cidr: 198.51.100.0/24
  check_mode: true
  register: preview

- name: Read the outputs of an existing stack without changing it
  xpu.parallelcluster.infra_stack:
    name: ml1-infra
    state: read
  register: infra

- name: Recreate a stack whose first creation failed
  xpu.parallelcluster.infra_stack:
    name: ml1-infra
    cluster_name: ml1
    availability_zones: [us-east-1a]
    ssh_allowed_cidr: 203.0.113.0/24
    replace_failed_stack: true

- name: Delete the stack
  xpu.parallelcluster.infra_stack:
    name: ml1-infra
    state: absent
    termination_protection: false
"""

RETURN = r"""
stack_id:
  description:
    - Id (ARN) of the stack; null when it does not exist (or would only be created in check mode).
  returned: always
  type: str
  sample: >-
    arn:aws:cloudformation:us-east-1:123456789012:stack/ml1-infra/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b
stack_status:
  description:
    - Stack status after the task; V(DELETE_COMPLETE) after a deletion; null when there is no stack.
  returned: always
  type: str
  sample: CREATE_COMPLETE
outputs:
  description:
    - The stack's outputs, key to value. Outputs that the template's conditions leave out are
      absent.
  returned: always
  type: dict
  sample:
    VpcId: vpc-0a1b2c3d4e5f60718
    PrivateSubnetIds: subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788
    HeadNodeSubnetId: subnet-0a1b2c3d4e5f60718
    FsxFileSystemId: fs-0123456789abcdef0
    MonitoringType: none
parameters:
  description: The stack's parameters as CloudFormation stores them, key to value.
  returned: always
  type: dict
  sample:
    ClusterName: ml1
    PrimaryAz: us-east-1a
    FsxStorageCapacity: "1200"
change_set:
  description:
    - Resource changes of the change set created in this run (executed, or only previewed in
      check mode); empty when nothing changed or no change set was used.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: V(Add), V(Modify), V(Remove), V(Import) or V(Dynamic).
      type: str
    logical_id:
      description: Logical id of the resource in the template.
      type: str
    resource_type:
      description: CloudFormation resource type.
      type: str
    replacement:
      description: V(True), V(False) or V(Conditional) for a V(Modify); null otherwise.
      type: str
  sample:
    - action: Modify
      logical_id: HeadNodeSecurityGroup
      resource_type: AWS::EC2::SecurityGroup
      replacement: "False"
events:
  description:
    - Progress of this run, one line per change of state - seconds since the start, stack or change
      set status, latest stack event.
  returned: always
  type: list
  elements: str
  sample:
    - "     0s change set xpu-update-1a2b3c (UPDATE) requested"
    - "     3s change set xpu-update-1a2b3c: CREATE_COMPLETE"
    - "    13s UPDATE_IN_PROGRESS | 12:00:03 HeadNodeSecurityGroup (AWS::EC2::SecurityGroup) ..."
    - "    23s UPDATE_COMPLETE | 12:00:20 ml1-infra (AWS::CloudFormation::Stack) UPDATE_COMPLETE"
emptied_buckets:
  description:
    - The buckets emptied before the deletion (in check mode, that would be), with the number of
      object versions and delete markers each held.
  returned: state is absent and the stack exists
  type: dict
  sample: {"ml1-infra-nodeassetsbucket-1a2b3c4d5e6f": 14}
diff:
  description:
    - Parameters, tags and termination protection before and after, and the resource changes
      (as text under C(prepared)). Shown by C(--diff).
  returned: state is present or absent
  type: dict
  contains:
    before:
      description: The deployed state.
      type: dict
    after:
      description: The requested state.
      type: dict
    before_header:
      description: Label of RV(diff.before).
      type: str
    after_header:
      description: Label of RV(diff.after).
      type: str
    prepared:
      description: The change set's resource changes and notes, as text.
      type: str
failed_resource:
  description: The first resource that failed (earliest failure event that is not a cancellation).
  returned: on failure of a create, update or delete, when an event names one
  type: dict
  contains:
    logical_id:
      description: Logical id of the resource.
      type: str
    resource_type:
      description: CloudFormation resource type.
      type: str
    status:
      description: Its status, for example V(CREATE_FAILED).
      type: str
    reason:
      description: CloudFormation's reason.
      type: str
  sample:
    logical_id: FsxFileSystem
    resource_type: AWS::FSx::FileSystem
    status: CREATE_FAILED
    reason: "Resource handler returned message: \"Invalid StorageCapacity\""
recent_events:
  description: The operation's most recent stack events (oldest first).
  returned: on failure of a create, update or delete
  type: list
  elements: str
msg:
  description: What happened, in words.
  returned: sometimes
  type: str
  sample: the stack is up to date
"""

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cloudformation as cfn

# Template parameter -> the option that sets it (for messages).
OPTION_FOR_PARAMETER = {
    "ClusterName": "cluster_name",
    "PrimaryAz": "availability_zones[0]",
    "SecondaryAz": "availability_zones[1]",
    "VpcCidr": "vpc_cidr",
    "SecondaryCidr": "secondary_cidr",
    "NatGateways": "nat_gateways",
    "SshAllowedCidr": "ssh_allowed_cidr",
    "MonitoringAllowedCidr": "monitoring_allowed_cidr",
    "S3EndpointExtraResources": "s3_endpoint_extra_resources",
    "ExistingFsxId": "fsx.existing_id",
    "CreateFsx": "fsx.create",
    "FsxDeploymentType": "fsx.deployment_type",
    "FsxStorageCapacity": "fsx.storage_capacity",
    "FsxThroughputPerTiB": "fsx.throughput_per_tib",
    "FsxDataCompression": "fsx.compression",
    "FsxLustreVersion": "fsx.lustre_version",
    "MonitoringType": "monitoring.type",
    "MonitoringInstanceType": "monitoring.instance_type",
    "MonitoringImageId": "monitoring.image_id",
    "MonitoringVolumeSize": "monitoring.volume_size",
    "CertificateArn": "monitoring.certificate_arn",
    "AmgAuthenticationProvider": "monitoring.amg_authentication",
}
FSX_NEW_OPTIONS = [
    "create",
    "deployment_type",
    "storage_capacity",
    "throughput_per_tib",
    "compression",
    "lustre_version",
]
MONITORING_TYPES = ["none", "self-hosting", "amp-only", "amp+amg"]
THROUGHPUT = {"PERSISTENT_2": (125, 250, 500, 1000), "PERSISTENT_1": (50, 100, 200)}
STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
FSX_ID_RE = re.compile(r"^fs-[0-9a-f]{8,21}$")
RETRY = AWSRetry.jittered_backoff(retries=10, delay=3, max_delay=30)


def argument_spec() -> dict[str, Any]:
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent", "read"], default="present"),
        cluster_name=dict(type="str"),
        availability_zones=dict(type="list", elements="str"),
        vpc_cidr=dict(type="str"),
        secondary_cidr=dict(type="str"),
        nat_gateways=dict(type="str", choices=["single", "per-az"]),
        ssh_allowed_cidr=dict(type="str"),
        monitoring_allowed_cidr=dict(type="str"),
        s3_endpoint_extra_resources=dict(type="list", elements="str"),
        fsx=dict(
            type="dict",
            options=dict(
                existing_id=dict(type="str"),
                create=dict(type="bool"),
                deployment_type=dict(type="str", choices=["PERSISTENT_2", "PERSISTENT_1"]),
                storage_capacity=dict(type="int"),
                throughput_per_tib=dict(type="int", choices=[50, 100, 125, 200, 250, 500, 1000]),
                compression=dict(type="str", choices=["LZ4", "NONE"]),
                lustre_version=dict(type="str", choices=["2.15", "2.12"]),
            ),
            mutually_exclusive=[["existing_id", option] for option in FSX_NEW_OPTIONS],
        ),
        monitoring=dict(
            type="dict",
            options=dict(
                type=dict(type="str", choices=[*MONITORING_TYPES, "amp"]),
                instance_type=dict(type="str"),
                image_id=dict(type="str"),
                volume_size=dict(type="int"),
                certificate_arn=dict(type="str"),
                amg_authentication=dict(type="str", choices=["AWS_SSO", "SAML"]),
            ),
        ),
        tags=dict(type="dict"),
        template=dict(type="path"),
        template_body=dict(type="str", no_log=False),
        template_bucket=dict(type="str"),
        replace_failed_stack=dict(type="bool", default=False),
        termination_protection=dict(type="bool"),
        empty_buckets=dict(type="bool", default=True),
        use_change_sets=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=3600),
        capabilities=dict(
            type="list",
            elements="str",
            choices=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            default=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        ),
    )


def check_cidr(module: AnsibleAWSModule, option: str, min_prefix: int, max_prefix: int) -> None:
    """An IPv4 CIDR option (empty allowed) whose prefix length lies in [min_prefix, max_prefix]."""
    value = module.params[option]
    if value in (None, ""):
        return
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as err:
        module.fail_json(msg=f"{option}: {value!r} is not an IPv4 CIDR ({err}), e.g. 10.0.0.0/16")
    if not min_prefix <= network.prefixlen <= max_prefix:
        wanted = f"/{min_prefix}" if min_prefix == max_prefix else f"/{min_prefix} to /{max_prefix}"
        module.fail_json(msg=f"{option}: {value} has prefix /{network.prefixlen}; use {wanted}")


def validate(module: AnsibleAWSModule) -> None:
    """Offline checks of option relations the argument spec cannot express."""
    p = module.params
    if not STACK_NAME_RE.match(p["name"]):
        module.fail_json(
            msg=f"name: {p['name']!r} is not a CloudFormation stack name (a letter, then letters, "
            "digits and hyphens, at most 128 characters)"
        )
    if p["wait_timeout"] <= 0:
        module.fail_json(msg="wait_timeout must be a positive number of seconds")
    if p["state"] != "present":
        return
    zones = p["availability_zones"]
    if not 1 <= len(zones) <= 2 or len(set(zones)) != len(zones) or not all(zones):
        module.fail_json(
            msg="availability_zones: give one or two distinct zones, e.g. [us-east-1a]; "
            f"got {zones}"
        )
    # The template lays subnets out in /16 blocks; SSH and Grafana are never open to the world.
    check_cidr(module, "vpc_cidr", 16, 16)
    check_cidr(module, "secondary_cidr", 16, 16)
    check_cidr(module, "ssh_allowed_cidr", 8, 32)
    check_cidr(module, "monitoring_allowed_cidr", 8, 32)

    fsx = p["fsx"] or {}
    if fsx.get("existing_id") and not FSX_ID_RE.match(fsx["existing_id"]):
        module.fail_json(
            msg=f"fsx.existing_id: {fsx['existing_id']!r} is not an FSx file system id "
            "(fs- and 8 to 21 hex digits)"
        )
    capacity = fsx.get("storage_capacity")
    valid = capacity == 1200 or (
        capacity is not None and 0 < capacity <= 240000 and not capacity % 2400
    )
    if capacity is not None and not valid:
        module.fail_json(
            msg=f"fsx.storage_capacity: {capacity} GiB is not valid for a persistent SSD file "
            "system; use 1200, 2400 or a multiple of 2400 up to 240000"
        )


def check_constraints(module: AnsibleAWSModule, body: str, parameters: dict[str, str]) -> None:
    """Each value sent against the constraints the template declares for its parameter."""
    declarations = cfn.parse_template(body).get("Parameters") or {}
    for name, value in parameters.items():
        problem = cfn.constraint_violation(declarations.get(name) or {}, value)
        if problem:
            option = OPTION_FOR_PARAMETER.get(name, name)
            module.fail_json(
                msg=f"{option}: {problem}; the template's parameter {name} refuses it "
                "(checked before calling AWS)"
            )


def check_effective(module: AnsibleAWSModule, parameters: dict[str, str]) -> None:
    """Relations between the values actually sent (options or template defaults)."""

    def value(name: str) -> str:
        return parameters.get(name, "")

    def fail(msg: str) -> None:
        module.fail_json(msg=f"{msg} (checked before calling AWS; the template's Rules agree)")

    kind = value("MonitoringType")
    if kind == "self-hosting" and not value("SecondaryAz"):
        fail(
            "monitoring.type self-hosting puts Grafana behind a load balancer in two Availability "
            "Zones; give two in availability_zones"
        )
    if kind == "self-hosting" and not value("MonitoringAllowedCidr"):
        fail("monitoring.type self-hosting needs monitoring_allowed_cidr (who may reach Grafana)")
    if value("MonitoringAllowedCidr") and kind != "self-hosting":
        fail(f"monitoring_allowed_cidr is used only by monitoring.type self-hosting, not {kind}")
    if value("CertificateArn") and kind != "self-hosting":
        fail(f"monitoring.certificate_arn is used only by monitoring.type self-hosting, not {kind}")
    if value("SecondaryCidr") and value("SecondaryCidr") == value("VpcCidr"):
        fail("secondary_cidr must differ from vpc_cidr (or be empty)")
    if value("ExistingFsxId") or value("CreateFsx") == "false":
        return
    deployment, throughput = value("FsxDeploymentType"), value("FsxThroughputPerTiB")
    if deployment not in THROUGHPUT or not throughput.isdigit():
        return
    if int(throughput) not in THROUGHPUT[deployment]:
        allowed = ", ".join(str(t) for t in THROUGHPUT[deployment])
        fail(
            f"fsx: throughput {throughput} MB/s/TiB is not offered for {deployment}; set "
            f"fsx.throughput_per_tib to one of {allowed}"
        )


def template_values(module: AnsibleAWSModule) -> dict[str, Any]:
    """Template parameter -> option value (None: not set, the template default applies)."""
    p = module.params
    zones = p["availability_zones"] or []
    fsx = p["fsx"] or {}
    monitoring = p["monitoring"] or {}
    kind = monitoring.get("type")
    if kind == "amp":
        module.deprecate(
            "monitoring.type 'amp' is the legacy spelling of 'amp-only'; write amp-only",
            version="2.0.0",
            collection_name="xpu.parallelcluster",
        )
        kind = "amp-only"
    return {
        "ClusterName": p["cluster_name"],
        "PrimaryAz": zones[0] if zones else None,
        # One zone given: send the template default (no second zone), so dropping one resets it.
        "SecondaryAz": zones[1] if len(zones) > 1 else None,
        "VpcCidr": p["vpc_cidr"],
        "SecondaryCidr": p["secondary_cidr"],
        "NatGateways": p["nat_gateways"],
        "SshAllowedCidr": p["ssh_allowed_cidr"],
        "MonitoringAllowedCidr": p["monitoring_allowed_cidr"],
        "S3EndpointExtraResources": p["s3_endpoint_extra_resources"],
        "ExistingFsxId": fsx.get("existing_id"),
        "CreateFsx": fsx.get("create"),
        "FsxDeploymentType": fsx.get("deployment_type"),
        "FsxStorageCapacity": fsx.get("storage_capacity"),
        "FsxThroughputPerTiB": fsx.get("throughput_per_tib"),
        "FsxDataCompression": fsx.get("compression"),
        "FsxLustreVersion": fsx.get("lustre_version"),
        "MonitoringType": kind,
        "MonitoringInstanceType": monitoring.get("instance_type"),
        "MonitoringImageId": monitoring.get("image_id"),
        "MonitoringVolumeSize": monitoring.get("volume_size"),
        "CertificateArn": monitoring.get("certificate_arn"),
        "AmgAuthenticationProvider": monitoring.get("amg_authentication"),
    }


def template_body(module: AnsibleAWSModule) -> str:
    if module.params["template_body"] is not None:
        return module.params["template_body"]
    path = module.params["template"]
    if not path:
        module.fail_json(
            msg="no template: call the module through its action plugin "
            "(xpu.parallelcluster.infra_stack), which reads the collection's template, or set "
            "template or template_body"
        )
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        module.fail_json(msg=f"template: cannot read {path}: {err}")


def stack_request(module: AnsibleAWSModule) -> cfn.StackRequest:
    """The requested stack (state present), computed offline from the options and the template."""
    p = module.params
    body = template_body(module)
    size = len(body.encode("utf-8"))
    if size > cfn.TEMPLATE_BODY_LIMIT and not p["template_bucket"]:
        module.fail_json(
            msg=f"stack {p['name']}: the template is {size} bytes and CloudFormation takes at most "
            f"{cfn.TEMPLATE_BODY_LIMIT} in a request; set template_bucket to an S3 bucket in the "
            "stack's region that you can write to, and the module passes the template through it"
        )
    upload = None
    if p["template_bucket"]:
        upload = cfn.TemplateUpload(
            lambda: module.client("s3", retry_decorator=RETRY),
            p["template_bucket"],
            p["name"],
            body,
        )
    declared = cfn.declared_parameters(body)
    parameters = cfn.effective_parameters(declared, template_values(module), OPTION_FOR_PARAMETER)
    check_constraints(module, body, parameters)
    check_effective(module, parameters)
    tags = p["tags"]
    return cfn.StackRequest(
        template_body=body,
        parameters=parameters,
        tags={str(k): str(v) for k, v in tags.items()} if tags is not None else None,
        capabilities=p["capabilities"],
        termination_protection=p["termination_protection"],
        replace_failed_stack=p["replace_failed_stack"],
        use_change_sets=p["use_change_sets"],
        declared=declared,
        template_url=upload,
    )


def ssm_resolver(module: AnsibleAWSModule) -> Callable[[str], str | None]:
    """Resolve an SSM parameter name to its value (None when it cannot be read)."""
    clients: list[Any] = []

    def resolve(name: str) -> str | None:
        if not clients:
            clients.append(module.client("ssm", retry_decorator=RETRY))
        try:
            return clients[0].get_parameter(aws_retry=True, Name=name)["Parameter"]["Value"]
        except cfn.aws_error_types():
            return None

    return resolve


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[["template", "template_body"]],
        required_if=[
            ["state", "present", ["cluster_name", "availability_zones", "ssh_allowed_cidr"]],
        ],
        supports_check_mode=True,
    )
    validate(module)
    p = module.params
    try:
        request = stack_request(module) if p["state"] == "present" else None
    except cfn.StackError as err:
        module.fail_json(msg=f"stack {p['name']}: {err.msg}")

    client = module.client("cloudformation", retry_decorator=RETRY)
    manager = cfn.StackManager(
        client,
        p["name"],
        cfn.Deadline(p["wait_timeout"]),
        resolve_ssm=ssm_resolver(module),
        s3_client=(
            (lambda: module.client("s3", retry_decorator=RETRY)) if p["empty_buckets"] else None
        ),
    )
    try:
        if p["state"] == "read":
            result = manager.read()
        elif p["state"] == "absent":
            result = manager.absent(module.check_mode, p["termination_protection"])
        else:
            result = manager.present(request, module.check_mode)
    except cfn.StackError as err:
        module.fail_json(msg=err.msg, **{"events": manager.progress, **err.details})
    except cfn.aws_error_types() as err:
        module.fail_json_aws(
            err, msg=f"stack {p['name']}: CloudFormation call failed", events=manager.progress
        )
    warn_about_data(module, result.get("change_set") or [])
    module.exit_json(**result)


# Resources whose replacement or removal loses data the cluster wrote.
STATEFUL_TYPES = ("AWS::FSx::FileSystem", "AWS::S3::Bucket", "AWS::EC2::Volume")


def warn_about_data(module: AnsibleAWSModule, changes: list[dict[str, Any]]) -> None:
    """Warn when the change set replaces or removes a resource that holds data."""
    verb = "would be" if module.check_mode else "was"
    for change in changes:
        rtype = change.get("resource_type")
        if rtype not in STATEFUL_TYPES:
            continue
        what = f"{change.get('logical_id')} ({rtype})"
        if change.get("action") == "Remove":
            module.warn(f"{what} {verb} removed, with its data")
        elif change.get("action") == "Modify" and change.get("replacement") in (
            "True",
            "Conditional",
        ):
            maybe = " (conditionally)" if change["replacement"] == "Conditional" else ""
            module.warn(
                f"{what} {verb} replaced{maybe}: the new one starts empty. The old one and its "
                "data stay only where the template sets UpdateReplacePolicy Retain (the "
                "collection's template does for FsxFileSystem; delete it yourself once copied)"
            )


if __name__ == "__main__":
    main()
