#!/usr/bin/python
# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_config
short_description: Render and validate an AWS ParallelCluster v3 configuration from a cluster spec
version_added: 0.1.0
description:
  - Turns a typed cluster I(spec), the infrastructure stack's outputs and the collection's instance
    catalog into an AWS ParallelCluster 3.16 cluster configuration, as data (never spliced text),
    and writes it as YAML when O(dest) is given.
  - Checks the spec before anything reaches AWS. Every message names the field by its path
    (for example C(queues[0].compute_resources[1].instance_type)) and says what to change;
    instance type typos get a "did you mean".
  - "Rules applied: the stack's security groups replace ParallelCluster's managed ones (SSH reaches
    the login nodes from the stack's C(SshAllowedCidr), the head node from the login nodes only);
    a Capacity Block queue gets no placement group; EFA is enabled exactly where the
    instance type has it (and GPUDirect RDMA where supported); multi-node EFA compute resources
    get a placement group unless reserved capacity places them; placement groups and EFA need a
    single subnet; S3 access is read-only on the stack's bucket only; the AMP remote-write policy
    goes on the head node only; IMDSv2 everywhere; every node runs the node bootstrap script
    (C(CustomActions/OnNodeConfigured)) with its role and queue; bootstrap timeouts are estimated
    from what the bootstrap runs; CloudWatch logs are on; tags carry the cluster name."
  - With O(validate=true) the rendered configuration is also loaded through ParallelCluster's own
    C(ClusterSchema), offline (no AWS call); schema errors fail the task with the config path.
  - Check mode reports whether O(dest) would change; C(--diff) shows the YAML difference.
  - The full reference, with the catalog table and examples, is C(docs/cluster.md).
author:
  - xpu.parallelcluster maintainers
requirements:
  - python >= 3.11
  - PyYAML
  - aws-parallelcluster == 3.16.1 on the controller, for O(validate=true)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Renders and validates, and reports whether O(dest) would change without writing it.
  diff_mode:
    support: full
    details: The YAML in O(dest) before and after.
  platform:
    platforms: posix
notes:
  - >-
    Runs on the controller (C(delegate_to: localhost)) with a Python that has aws-parallelcluster,
    for example C(ansible_python_interpreter: "{{ ansible_playbook_python }}").
  - Login nodes take no SSH key pair (ParallelCluster 3.15 removed C(KeyName) for login nodes).
  - Cost figures come from a dated table of approximate us-east-1 on-demand prices
    (RV(summary.prices_date)); they are for planning, not billing.
options:
  spec:
    description:
      - The cluster spec. Ready-made specs per accelerator family live in
        C(playbooks/vars/cluster_presets/).
    type: dict
    required: true
    suboptions:
      name:
        description:
          - Cluster name. Starts with a letter; letters, digits and hyphens; at most 60 characters
            (40 with O(spec.slurm.database)).
        type: str
        required: true
      region:
        description:
          - AWS region, for example C(us-east-1). The offline schema check runs with it.
        type: str
        required: true
      os:
        description:
          - Operating system of every node. C(rocky8) and C(rocky9) have no public ParallelCluster
            AMI and need O(spec.custom_ami). p6e-gb200 does not run C(rhel8), C(rocky8) or C(rhel9).
        type: str
        default: alinux2023
        choices: [alinux2023, ubuntu2204, ubuntu2404, rhel8, rhel9, rocky8, rocky9]
      custom_ami:
        description:
          - AMI id (C(ami-...)) built with C(pcluster build-image), used by every node.
        type: str
      head_node:
        description:
          - The head node (Slurm controller), placed in the stack's private head node subnet.
        type: dict
        default: {}
        suboptions:
          instance_type:
            description:
              - Instance type; must be in the catalog and match the compute architecture
                (an arm64 type such as C(m7g.2xlarge) for p6e-gb200 clusters).
            type: str
            default: m6i.2xlarge
          subnet_id:
            description:
              - Subnet override. Default the stack's C(HeadNodeSubnetId).
            type: str
          root_volume_size:
            description:
              - Root volume size in GiB (gp3), at least 40.
            type: int
            default: 200
          root_volume_encrypted:
            description:
              - Encrypt the root volume.
            type: bool
            default: true
          ssh_key_name:
            description:
              - EC2 key pair for the default user. Unset means no key pair (use SSM or the
                directory service).
            type: str
          allowed_ssh_cidr:
            description:
              - IPv4 CIDR or managed prefix list (C(pl-...)) allowed to SSH to the head node;
                C(0.0.0.0/0) is refused.
              - With the stack's C(HeadNodeSecurityGroupId) (the usual case) the head node takes
                SSH from the login nodes only and setting this is an error. Without it, unset
                means no SSH from the network (rendered as C(127.0.0.1/32), because
                ParallelCluster would otherwise open port 22 to the world).
            type: str
          imds_secured:
            description:
              - Restrict the head node's instance metadata (and its role credentials) to root
                (C(HeadNode/Imds/Secured)). IMDSv2 is always required, on every node.
            type: bool
            default: true
          additional_iam_policies:
            description:
              - Extra IAM policy ARNs for the head node role.
            type: list
            elements: str
            default: []
          dcv:
            description:
              - Amazon DCV remote desktop on the head node.
            type: dict
            default: {}
            suboptions:
              enabled:
                description:
                  - Enable DCV.
                type: bool
                default: false
              allowed_cidr:
                description:
                  - IPv4 CIDR or prefix list allowed to reach DCV; required when enabled,
                    C(0.0.0.0/0) refused.
                type: str
              port:
                description:
                  - DCV port.
                type: int
                default: 8443
      login_pools:
        description:
          - Login node pools (at most 10), behind the network load balancer ParallelCluster creates.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - Pool name; lowercase letters, digits and hyphens, starts with a letter, at most 25.
            type: str
            required: true
          instance_type:
            description:
              - Instance type (same architecture as the head node).
            type: str
            default: m6i.xlarge
          count:
            description:
              - Number of login nodes.
            type: int
            default: 1
          allowed_ssh_cidr:
            description:
              - IPv4 CIDR or prefix list allowed to SSH to the pool; C(0.0.0.0/0) is refused.
              - Only without the stack's C(LoginNodeSecurityGroupId), and then required. With it,
                the stack's group (its C(SshAllowedCidr)) decides and setting this is an error.
            type: str
          subnet_id:
            description:
              - Subnet override. Default the stack's C(HeadNodeSubnetId).
            type: str
          gracetime_period:
            description:
              - Minutes logged-in users get before a login node is stopped (3-120).
            type: int
          additional_iam_policies:
            description:
              - Extra IAM policy ARNs for the pool's role.
            type: list
            elements: str
            default: []
          bootstrap:
            description:
              - Run the node bootstrap script on the pool's nodes. ParallelCluster cannot give
                login nodes S3 access, so this needs a policy that reads the script in
                O(spec.login_pools[].additional_iam_policies) or O(spec.iam.additional_policies).
            type: bool
            default: false
      queues:
        description:
          - Slurm queues (partitions), at most 50, with at most 50 compute resources in all.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description:
              - Queue name; lowercase letters, digits and hyphens, starts with a letter, at most 25,
                not C(default).
            type: str
            required: true
          capacity_type:
            description:
              - How the queue's instances are bought. C(ODCR) is a targeted On-Demand Capacity
                Reservation, rendered as ParallelCluster C(ONDEMAND) plus
                C(CapacityReservationTarget). C(CAPACITY_BLOCK) and C(ODCR) need
                O(spec.queues[].reservation_id) and one subnet; a Capacity Block has static nodes
                (min = max) and no placement group.
            type: str
            default: ONDEMAND
            choices: [ONDEMAND, SPOT, CAPACITY_BLOCK, ODCR]
          reservation_id:
            description:
              - Capacity reservation id (C(cr-...)) for C(CAPACITY_BLOCK) and C(ODCR) queues; a
                compute resource may override it.
            type: str
          allocation_strategy:
            description:
              - EC2 Fleet allocation strategy (not for reserved capacity).
            type: str
            choices: [lowest-price, capacity-optimized, price-capacity-optimized]
          subnet_ids:
            description:
              - Subnet override. Default the first of the stack's C(PrivateSubnetIds).
            type: list
            elements: str
          multi_az:
            description:
              - Spread the queue over all of the stack's private subnets. Not with EFA or
                placement groups.
            type: bool
            default: false
          root_volume_size:
            description:
              - Root volume size in GiB; unset keeps the AMI's size.
            type: int
          root_volume_encrypted:
            description:
              - Encrypt the root volume.
            type: bool
            default: true
          ephemeral_mount_dir:
            description:
              - Where instance-store NVMe (RAID 0) is mounted.
            type: str
            default: /scratch
          job_exclusive_allocation:
            description:
              - Give each job whole nodes (Slurm C(OverSubscribe=EXCLUSIVE)).
            type: bool
          gpu_health_check:
            description:
              - ParallelCluster's GPU health check (C(dcgmi diag -r 2) in the prolog) on GPU queues.
                It has hung on p4d/p5 (aws-parallelcluster
                L(#6777,https://github.com/aws/aws-parallelcluster/issues/6777)).
            type: bool
            default: false
          custom_slurm_settings:
            description:
              - Partition settings (C(CustomSlurmSettings) of the queue); those ParallelCluster owns
                (C(Nodes), C(PartitionName), C(ResumeTimeout), C(State), C(SuspendTime),
                C(OverSubscribe)) are refused.
            type: dict
            default: {}
          additional_iam_policies:
            description:
              - Extra IAM policy ARNs for the queue's nodes.
            type: list
            elements: str
            default: []
          compute_resources:
            description:
              - Compute resources of the queue (one instance type each).
            type: list
            elements: dict
            required: true
            suboptions:
              name:
                description:
                  - Name; lowercase letters, digits and hyphens, starts with a letter, at most 25.
                type: str
                required: true
              instance_type:
                description:
                  - Instance type from the catalog (C(docs/cluster.md)); a typo gets a
                    "did you mean".
                type: str
                required: true
              min_count:
                description:
                  - Static nodes. Default 0, or O(spec.queues[].compute_resources[].max_count) on a
                    Capacity Block.
                type: int
              max_count:
                description:
                  - Most nodes.
                type: int
                required: true
              efa:
                description:
                  - Enable EFA. Default from the catalog (on where the type has EFA); C(true) on a
                    type without EFA is refused.
                type: bool
              placement_group:
                description:
                  - Use a cluster placement group. Default on for multi-node EFA compute resources,
                    off on Capacity Blocks (which refuse one) and targeted ODCRs.
                type: bool
              placement_group_name:
                description:
                  - An existing placement group (for example the one an ODCR was made in).
                type: str
              reservation_id:
                description:
                  - Reservation id overriding the queue's.
                type: str
              disable_simultaneous_multithreading:
                description:
                  - Turn hyper-threading off (one vCPU per core).
                type: bool
              spot_price:
                description:
                  - Maximum Spot price in USD per hour (C(SPOT) queues only).
                type: float
      shared_storage:
        description:
          - Shared file systems.
        type: dict
        default: {}
        suboptions:
          fsx:
            description:
              - The stack's FSx for Lustre file system.
            type: dict
            default: {}
            suboptions:
              enabled:
                description:
                  - Mount it.
                type: bool
                default: true
              name:
                description:
                  - Storage name in the config.
                type: str
                default: fsx
              mount_dir:
                description:
                  - Mount point.
                type: str
                default: /fsx
              file_system_id:
                description:
                  - File system id override. Default the stack's C(FsxFileSystemId).
                type: str
          efs:
            description:
              - EFS file systems (existing ones by id; at most one new one).
            type: list
            elements: dict
            default: []
            suboptions:
              name:
                description:
                  - Storage name (at most 30 characters).
                type: str
                required: true
              mount_dir:
                description:
                  - Mount point (not a system directory).
                type: str
                required: true
              file_system_id:
                description:
                  - Existing file system id; the settings below then do not apply.
                type: str
              encrypted:
                description:
                  - Encrypt a new file system.
                type: bool
                default: true
              performance_mode:
                description:
                  - Performance mode of a new file system.
                type: str
                choices: [generalPurpose, maxIO]
              throughput_mode:
                description:
                  - Throughput mode of a new file system.
                type: str
                choices: [bursting, provisioned]
              provisioned_throughput:
                description:
                  - MiB/s (1-1024) with O(spec.shared_storage.efs[].throughput_mode=provisioned).
                type: int
              deletion_policy:
                description:
                  - What happens to a new file system when the cluster is deleted.
                type: str
                choices: [Delete, Retain]
          ebs:
            description:
              - EBS volumes shared from the head node (at most 5).
            type: list
            elements: dict
            default: []
            suboptions:
              name:
                description:
                  - Storage name (at most 30 characters).
                type: str
                required: true
              mount_dir:
                description:
                  - Mount point (not a system directory).
                type: str
                required: true
              volume_id:
                description:
                  - Existing volume id; size and snapshot then do not apply.
                type: str
              snapshot_id:
                description:
                  - Snapshot to create the volume from.
                type: str
              size:
                description:
                  - Size in GiB.
                type: int
              volume_type:
                description:
                  - Volume type.
                type: str
                default: gp3
                choices: [gp3, gp2, io1, io2, st1, sc1]
              iops:
                description:
                  - IOPS (gp3, io1, io2).
                type: int
              throughput:
                description:
                  - Throughput in MiB/s (gp3).
                type: int
              encrypted:
                description:
                  - Encrypt the volume.
                type: bool
                default: true
              deletion_policy:
                description:
                  - What happens to the volume when the cluster is deleted.
                type: str
                choices: [Delete, Retain, Snapshot]
      slurm:
        description:
          - Slurm settings.
        type: dict
        default: {}
        suboptions:
          scaledown_idletime:
            description:
              - Minutes an idle dynamic node waits before it is stopped (-1 never).
            type: int
            default: 10
          queue_update_strategy:
            description:
              - How queue changes reach running nodes on a cluster update.
            type: str
            default: DRAIN
            choices: [DRAIN, TERMINATE, COMPUTE_FLEET_STOP]
          enable_memory_based_scheduling:
            description:
              - Schedule on memory as well as CPUs and GPUs.
            type: bool
            default: false
          custom_slurm_settings:
            description:
              - >-
                C(slurm.conf) settings, one C({Name: value}) mapping each. Settings
                ParallelCluster writes itself (C(ResumeTimeout), C(SuspendTime), C(Prolog),
                C(Epilog), C(TaskPlugin), ...; the accounting ones with O(spec.slurm.database))
                are refused.
            type: list
            elements: dict
            default: []
          database:
            description:
              - Slurm accounting database (slurmdbd on the head node).
            type: dict
            suboptions:
              uri:
                description:
                  - Database host and port, for example C(db.example.com:3306).
                type: str
                required: true
              user_name:
                description:
                  - Database user.
                type: str
                required: true
              password_secret_arn:
                description:
                  - Secrets Manager ARN of the database password.
                type: str
                required: true
              database_name:
                description:
                  - Database name (1-64 of C([0-9a-z_])).
                type: str
      monitoring:
        description:
          - CloudWatch and Prometheus settings.
        type: dict
        default: {}
        suboptions:
          cloudwatch_logs:
            description:
              - Send node logs to CloudWatch Logs (turning it off hides why a node failed).
            type: bool
            default: true
          log_retention_days:
            description:
              - CloudWatch Logs retention.
            type: int
            default: 14
            choices: [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653]
          cloudwatch_dashboards:
            description:
              - ParallelCluster's CloudWatch dashboard.
            type: bool
            default: true
          detailed_monitoring:
            description:
              - EC2 detailed (1-minute) monitoring.
            type: bool
            default: false
          prometheus_remote_write:
            description:
              - Attach the stack's C(AmpRemoteWritePolicyArn) to the head node (only) so its
                Prometheus can remote-write to Amazon Managed Prometheus. Unset means on when the
                stack outputs the policy.
            type: bool
      bootstrap:
        description:
          - The node bootstrap script run by every node after ParallelCluster configured it.
        type: dict
        default: {}
        suboptions:
          enabled:
            description:
              - Run it.
            type: bool
            default: true
          script:
            description:
              - Script URL. Default C(s3://<NodeAssetsBucketName>/bootstrap/node-bootstrap.sh); an
                C(s3://) URL must be in the stack's bucket (nodes read that bucket only).
            type: str
          args:
            description:
              - Extra arguments, appended after C(--cluster-name NAME --role ROLE [--queue QUEUE]
                --components LIST).
            type: list
            elements: str
            default: []
          components:
            description:
              - What the bootstrap does. Each role runs its share (C(nccl_shared) on the head node
                only, C(efa_check) and C(efa_exporter) on EFA queues, C(container_toolkit) and
                C(dcgm_exporter) on GPU queues); the timeouts are estimated from it.
            type: list
            elements: str
            default:
              - efa_check
              - container_toolkit
              - enroot_pyxis
              - lustre_client
              - nccl_shared
              - cloudwatch_agent
              - node_exporter
              - efa_exporter
              - dcgm_exporter
            choices:
              - efa_check
              - container_toolkit
              - enroot_pyxis
              - lustre_client
              - nccl_shared
              - cloudwatch_agent
              - node_exporter
              - efa_exporter
              - dcgm_exporter
          head_node_timeout:
            description:
              - Seconds (600-7200) overriding the estimated C(HeadNodeBootstrapTimeout).
            type: int
          compute_node_timeout:
            description:
              - Seconds (600-7200) overriding the estimated C(ComputeNodeBootstrapTimeout)
                (Slurm's C(ResumeTimeout)).
            type: int
      tags:
        description:
          - Tags for every resource; C(xpu:cluster-name) and C(xpu:managed-by) are added. Keys may
            not start with C(parallelcluster:), C(aws:) or C(xpu:).
        type: dict
        default: {}
      iam:
        description:
          - Cluster-wide IAM settings.
        type: dict
        default: {}
        suboptions:
          additional_policies:
            description:
              - Extra IAM policy ARNs for every node role (head, queues, login pools).
            type: list
            elements: str
            default: []
          permissions_boundary:
            description:
              - Permissions boundary policy ARN for the roles ParallelCluster creates.
            type: str
      directory_service:
        description:
          - Active Directory / LDAP integration for multi-user clusters.
        type: dict
        suboptions:
          domain_name:
            description:
              - FQDN (C(corp.example.com)) or LDAP DN (C(DC=corp,DC=example,DC=com)).
            type: str
            required: true
          domain_addr:
            description:
              - LDAP URI(s) of the domain controllers, for example C(ldaps://corp.example.com).
            type: str
            required: true
          domain_read_only_user:
            description:
              - DN of the read-only bind user.
            type: str
            required: true
          password_secret_arn:
            description:
              - Secrets Manager secret or SSM parameter ARN of the bind password.
            type: str
            required: true
          ldap_tls_ca_cert:
            description:
              - Path of the CA bundle on the nodes.
            type: str
          ldap_tls_req_cert:
            description:
              - Certificate checks on TLS sessions.
            type: str
            choices: [never, allow, try, demand, hard]
          generate_ssh_keys_for_users:
            description:
              - Create an SSH key for each user on first login.
            type: bool
      proxy:
        description:
          - HTTP(S) proxy for every node.
        type: dict
        suboptions:
          http_proxy_address:
            description:
              - Proxy URL with port, for example C(http://proxy.example.com:8080).
            type: str
            required: true
  infra_outputs:
    description:
      - The infrastructure stack's outputs (the infra stage's result). Used keys
        C(HeadNodeSubnetId), C(PrivateSubnetIds) (comma-joined), C(HeadNodeSecurityGroupId),
        C(LoginNodeSecurityGroupId), C(ComputeSecurityGroupId) (rendered as the nodes'
        C(SecurityGroups)), C(FsxFileSystemId),
        C(NodeAssetsBucketName), C(AmpRemoteWritePolicyArn); others are ignored.
    type: dict
    default: {}
  dest:
    description:
      - Where to write the YAML. Written only when its content changes. Unset renders only.
    type: path
  validate:
    description:
      - Load the rendered configuration through aws-parallelcluster's C(ClusterSchema), offline.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Render the cluster config from a preset and the infra stage's outputs
  xpu.parallelcluster.cluster_config:
    spec: "{{ cluster_spec }}"
    infra_outputs: "{{ infra.outputs }}"
    dest: "{{ playbook_dir }}/../.cache/clusters/{{ cluster_spec.name }}.yaml"
  delegate_to: localhost
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  register: cluster_config

- name: A p5 capacity block cluster, written out and validated offline
  xpu.parallelcluster.cluster_config:
    spec:
      name: llm-train
      region: us-east-1
      head_node:
        instance_type: m6i.2xlarge
      login_pools:
        - name: login
      queues:
        - name: gpu
          capacity_type: CAPACITY_BLOCK
          reservation_id: cr-0123456789abcdef0
          compute_resources:
            - name: p5
              instance_type: p5.48xlarge
              max_count: 4
    infra_outputs: "{{ infra.outputs }}"
    dest: /tmp/llm-train.yaml

- name: Show what the queues cost per hour at full size
  ansible.builtin.debug:
    msg: "{{ cluster_config.summary.compute | map(attribute='usd_per_hour_at_max') | sum }} USD/h"
"""

RETURN = r"""
config:
  description: The ParallelCluster configuration as data.
  returned: success
  type: dict
  sample:
    Region: us-east-1
    Image: {Os: alinux2023}
    HeadNode: {InstanceType: m6i.2xlarge}
config_yaml:
  description: The configuration as written to O(dest) (a two-line header comment, then YAML).
  returned: success
  type: str
dest:
  description: The file written or compared, when O(dest) is set.
  returned: when dest is set
  type: str
summary:
  description: What the cluster holds and roughly costs.
  returned: success
  type: dict
  contains:
    compute:
      description: One entry per compute resource.
      type: list
      elements: dict
      contains:
        queue:
          description: Queue name.
          type: str
        compute_resource:
          description: Compute resource name.
          type: str
        instance_type:
          description: Instance type.
          type: str
        accelerators:
          description: GPUs or Trainium chips per node.
          type: int
        accelerator_model:
          description: Accelerator model (C(H100), C(B200), C(Trainium2)...), C(none) for CPU types.
          type: str
        efa_interfaces:
          description: EFA interfaces per node (0 when EFA is off).
          type: int
        min_nodes:
          description: Static nodes.
          type: int
        max_nodes:
          description: Most nodes.
          type: int
        placement_group:
          description: Whether the compute resource uses a cluster placement group.
          type: bool
        capacity_type:
          description: Capacity type as in the spec (C(ODCR) included).
          type: str
        usd_per_hour_per_node:
          description: Approximate on-demand price of one node.
          type: float
        usd_per_hour_at_max:
          description: Approximate price of the compute resource at max_nodes.
          type: float
        price_note:
          description: How the price was found (list price, estimate, other region).
          type: str
    head_node:
      description: Head node instance type, usd_per_hour and price_note.
      type: dict
    login_pools:
      description: >-
        Per pool, pool, instance_type, count, usd_per_hour_per_node, usd_per_hour and
        price_note.
      type: list
      elements: dict
    usd_per_hour_at_max:
      description: Head node, login nodes and every compute resource at max_nodes.
      type: float
    usd_per_hour_at_min:
      description: Head node, login nodes and the static compute nodes (the idle cost).
      type: float
    prices_date:
      description: Date of the price table.
      type: str
      sample: "2025-07-01"
    prices_region:
      description: Region of the price table.
      type: str
      sample: us-east-1
    prices_approximate:
      description: Always true; the figures are for planning.
      type: bool
bootstrap_timeouts:
  description: The bootstrap timeouts rendered and how they were found.
  returned: success
  type: dict
  contains:
    head_node:
      description: seconds, estimate, source (C(estimate) or C(override)) and components.
      type: dict
    compute_node:
      description: seconds, estimate, source and components (all queues together).
      type: dict
render_warnings:
  description:
    - Things to look at before creating the cluster (also emitted as task warnings).
  returned: success
  type: list
  elements: str
notes:
  description: What the renderer derived and why (defaults taken from the catalog, timeouts).
  returned: success
  type: list
  elements: str
spec_errors:
  description: Every problem found in the spec or the infra outputs, one line each.
  returned: failure
  type: list
  elements: str
schema_errors:
  description: ParallelCluster schema errors (config path and message), one line each.
  returned: failure
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xpu.parallelcluster.plugins.module_utils.cluster_render import (
    PclusterMissingError,
    RenderError,
    render,
    validate_offline,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils.cluster_spec import (
    OPTIONS,
    SpecError,
)


def argument_spec() -> dict:
    return {
        "spec": {"type": "dict", "required": True, "options": OPTIONS},
        "infra_outputs": {"type": "dict", "default": {}},
        "dest": {"type": "path"},
        "validate": {"type": "bool", "default": True},
    }


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(module: AnsibleModule, path: str, content: str) -> None:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        module.fail_json(
            msg=f"cannot write {path}: directory {directory} does not exist; create it first "
            "or choose another dest"
        )
    fd, tmp = tempfile.mkstemp(prefix=".cluster-config-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        rendered = render(params["spec"], params["infra_outputs"])
    except (SpecError, RenderError) as exc:
        module.fail_json(msg=str(exc), spec_errors=[str(issue) for issue in exc.issues])
    if params["validate"]:
        try:
            validate_offline(rendered.config, params["spec"]["name"], params["spec"]["region"])
        except PclusterMissingError as exc:
            module.fail_json(msg=str(exc))
        except RenderError as exc:
            module.fail_json(msg=str(exc), schema_errors=[str(issue) for issue in exc.issues])

    for warning in rendered.warnings:
        module.warn(warning)
    result = {
        "changed": False,
        "config": rendered.config,
        "config_yaml": rendered.config_yaml,
        "summary": rendered.summary,
        "bootstrap_timeouts": rendered.bootstrap_timeouts,
        "render_warnings": rendered.warnings,
        "notes": rendered.notes,
    }
    dest = params["dest"]
    if dest:
        result["dest"] = dest
        before = _read(dest)
        if before != rendered.config_yaml:
            result["changed"] = True
            if module._diff:
                result["diff"] = {
                    "before": before or "",
                    "after": rendered.config_yaml,
                    "before_header": dest if before is not None else f"{dest} (absent)",
                    "after_header": dest,
                }
            if not module.check_mode:
                _write(module, dest, rendered.config_yaml)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
