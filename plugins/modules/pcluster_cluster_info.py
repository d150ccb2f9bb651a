#!/usr/bin/python
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: pcluster_cluster_info
short_description: Status, head node, instances by queue and deployed config of a ParallelCluster
version_added: 0.1.0
description:
  - Reads one AWS ParallelCluster v3 cluster with the C(pcluster) CLI - C(describe-cluster),
    C(describe-cluster-instances) and C(describe-compute-fleet) - and, with O(include_config), the
    deployed cluster configuration from S3.
  - A cluster that does not exist is not an error - RV(exists) is V(false).
  - Changes nothing; runs the same in check mode.
  - The module runs where the C(pcluster) CLI is installed, normally the controller
    (C(delegate_to=localhost)).
options:
  name:
    description:
      - Name of the cluster.
    type: str
    required: true
  include_config:
    description:
      - Also read the deployed cluster configuration (the object that C(describe-cluster)'s
        C(clusterConfiguration.url) names) with the S3 API and return it parsed in RV(config).
      - When it cannot be read, RV(config) is null and a warning says why.
    type: bool
    default: false
  pcluster_path:
    description:
      - Path of the C(pcluster) executable. Default - the one next to the Python that runs the
        module, else the first on C(PATH).
    type: path
author:
  - xpu.parallelcluster contributors
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
  platform:
    platforms: all
    description: Runs where the pcluster CLI is installed, usually the controller.
requirements:
  - aws-parallelcluster 3.16.1 (the C(pcluster) CLI)
  - boto3 and PyYAML (for O(include_config))
seealso:
  - module: xpu.parallelcluster.pcluster_cluster
"""

EXAMPLES = r"""
- name: Read cluster ml1 with its deployed config
  xpu.parallelcluster.pcluster_cluster_info:
    name: ml1
    region: us-east-1
    include_config: true
  delegate_to: localhost
  register: ml1

- name: Show where the head node is and how many GPU nodes run
  ansible.builtin.debug:
    msg: >-
      {{ ml1.status }}: head node {{ ml1.head_node.private_ip }},
      {{ ml1.instances_by_queue.gpu | default([]) | length }} gpu nodes,
      fleet {{ ml1.compute_fleet.status }}
  when: ml1.exists
"""

RETURN = r"""
exists:
  description: Whether the cluster exists.
  returned: always
  type: bool
status:
  description: The cluster status (C(clusterStatus)); null when it does not exist.
  returned: always
  type: str
  sample: CREATE_COMPLETE
cluster:
  description: The C(pcluster describe-cluster) answer, keys as pcluster prints them (camelCase).
  returned: when the cluster exists
  type: dict
  sample:
    clusterName: ml1
    clusterStatus: CREATE_COMPLETE
    cloudFormationStackStatus: CREATE_COMPLETE
    computeFleetStatus: RUNNING
    version: 3.16.1
head_node:
  description: The head node; null while it has no instance (for example during a deletion).
  returned: when the cluster exists
  type: dict
  contains:
    instance_id:
      description: EC2 instance id.
      type: str
      sample: i-0123456789abcdef0
    instance_type:
      description: EC2 instance type.
      type: str
      sample: m6i.xlarge
    private_ip:
      description: Private IPv4 address.
      type: str
      sample: 10.0.0.10
    public_ip:
      description: Public IPv4 address, when it has one.
      type: str
    state:
      description: EC2 instance state.
      type: str
      sample: running
    launch_time:
      description: Launch time (ISO 8601).
      type: str
login_nodes:
  description: Login node pools (C(describe-cluster) C(loginNodes)).
  returned: when the cluster exists
  type: list
  elements: dict
  sample:
    - pool_name: login
      status: active
      address: ml1-login-0123.elb.us-east-1.amazonaws.com
      scheme: internet-facing
      healthy_nodes: 2
      unhealthy_nodes: 0
instances_by_queue:
  description:
    - Compute instances per Slurm queue (C(describe-cluster-instances)), each with
      C(instance_id), C(node_type), C(state), C(private_ip), C(instance_type), C(launch_time).
  returned: when the cluster exists
  type: dict
  sample:
    gpu:
      - instance_id: i-0aaaaaaaaaaaaaaa1
        node_type: ComputeNode
        state: running
        private_ip: 10.0.16.11
        instance_type: p5.48xlarge
        launch_time: "2026-01-05T10:04:00.000Z"
compute_fleet:
  description: >-
    The compute fleet (C(describe-compute-fleet)) - C(status), C(last_status_updated_time).
  returned: when the cluster exists
  type: dict
  sample:
    status: RUNNING
    last_status_updated_time: "2026-01-05T10:10:00.000Z"
config:
  description: The deployed cluster configuration, parsed; null when it could not be read.
  returned: when O(include_config=true) and the cluster exists
  type: dict
"""

from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports a missing botocore
    BotoCoreError = ClientError = OSError  # type: ignore[assignment,misc]

try:
    import yaml

    HAS_YAML = True
except ImportError:
    HAS_YAML = False


def read_config(module: AnsibleAWSModule, name: str, cluster: dict[str, Any]) -> Any:
    """The deployed config parsed, or None with a warning."""
    url = (cluster.get("clusterConfiguration") or {}).get("url", "")
    if not HAS_YAML:
        module.warn(f"cluster {name}: config not read: PyYAML is not installed")
        return None
    try:
        text = pc.fetch_deployed_config(module.client("s3"), url)
        return yaml.safe_load(text)
    except (ValueError, KeyError, UnicodeDecodeError, BotoCoreError, ClientError) as exc:
        module.warn(f"cluster {name}: deployed config not read from S3 ({exc}); config is null")
    except yaml.YAMLError as exc:
        module.warn(f"cluster {name}: deployed config is not valid YAML ({exc}); config is null")
    return None


def gather(module: AnsibleAWSModule, cli: pc.PclusterCli) -> dict[str, Any]:
    name = module.params["name"]
    try:
        cluster = cli.describe_cluster(name)
    except pc.PclusterNotFound:
        return {"changed": False, "exists": False, "status": None}
    result: dict[str, Any] = {
        "changed": False,
        "exists": True,
        "status": cluster.get("clusterStatus"),
        "cluster": cluster,
        "head_node": pc.head_node_view(cluster),
        "login_nodes": pc.login_nodes_view(cluster),
    }
    try:
        instances = cli.describe_cluster_instances(name)
    except pc.PclusterNotFound:  # deleted between two calls
        instances = []
    result["instances_by_queue"] = pc.instances_by_queue(instances)
    try:
        fleet = cli.describe_compute_fleet(name)
        result["compute_fleet"] = {
            "status": fleet.get("status"),
            "last_status_updated_time": fleet.get("lastStatusUpdatedTime"),
        }
    except pc.PclusterError as exc:
        module.warn(f"cluster {name}: describe-compute-fleet failed ({exc.message})")
        result["compute_fleet"] = {
            "status": cluster.get("computeFleetStatus"),
            "last_status_updated_time": None,
        }
    if module.params["include_config"]:
        result["config"] = read_config(module, name, cluster)
    return result


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            include_config=dict(type="bool", default=False),
            pcluster_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        cli = pc.PclusterCli(
            pc.find_pcluster(module.params["pcluster_path"]),
            region=module.params["region"],
            env=pc.aws_environment(module.params),
        )
        result = gather(module, cli)
    except pc.PclusterError as exc:
        module.fail_json(msg=f"cluster {name}: {exc.message}", **exc.details())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
