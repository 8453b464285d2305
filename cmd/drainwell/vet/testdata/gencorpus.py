# Generates cmd/drainwell/vet/testdata/corpus: for each rule, fires.yaml
# (a manifest that triggers it) and near-miss.yaml (the closest shape that
# must not). Shapes follow what common charts render.
import copy, os, yaml

def base(replicas=2):
    dep = {
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
      "spec": {
        "replicas": replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
          "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
          "spec": {
            "terminationGracePeriodSeconds": 35,
            "containers": [{
              "name": "web", "image": "registry.example/web:1.0",
              "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9091}],
              "env": [
                {"name": "DRAIN_DELAY", "value": "5s"},
                {"name": "SHUTDOWN_TIMEOUT", "value": "25s"},
                {"name": "ADMIN_ADDR", "value": ":9091"},
                {"name": "LIVE_MAX_AGE", "value": "20s"},
              ],
              "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}, "periodSeconds": 2, "failureThreshold": 2},
              "livenessProbe": {"exec": {"command": ["/app", "live"]}, "periodSeconds": 10, "failureThreshold": 2,
                                "terminationGracePeriodSeconds": 10},
            }],
          },
        },
      },
    }
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app.kubernetes.io/name": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}}
    return dep, svc, pdb

def ctr(dep): return dep["spec"]["template"]["spec"]["containers"][0]
def pod(dep): return dep["spec"]["template"]["spec"]
def setenv(dep, k, v):
    e = ctr(dep)["env"]
    for x in e:
        if x["name"] == k:
            x["value"] = v; return
    e.append({"name": k, "value": v})

cases = {}
def case(rule, note_fire, fire, note_miss, miss):
    cases[rule] = ((note_fire, fire), (note_miss, miss))

def variant(f, replicas=2):
    d, s, p = base(replicas)
    f(d, s, p)
    return [d, s, p]

case("grace-period",
  "SHUTDOWN_TIMEOUT 30s with the default grace period of 30s (a chart that sets the app's timeout, not the pod's)",
  variant(lambda d, s, p: (setenv(d, "SHUTDOWN_TIMEOUT", "30s"), pod(d).pop("terminationGracePeriodSeconds"))),
  "SHUTDOWN_TIMEOUT 25s + 5s margin within a 30s grace",
  variant(lambda d, s, p: pod(d).update(terminationGracePeriodSeconds=30)))

def prestop_shell(d, s, p, cmd, image):
    ctr(d)["image"] = image
    ctr(d)["lifecycle"] = {"preStop": {"exec": {"command": cmd}}}
    setenv(d, "DRAIN_DELAY", "none")
case("exec-needs-program",
  "the articles' preStop sh -c 'sleep 5' in a distroless image",
  variant(lambda d, s, p: prestop_shell(d, s, p, ["sh", "-c", "sleep 5"], "gcr.io/distroless/static-debian12:nonroot")),
  "the same hook in an image with a shell (nginx)",
  variant(lambda d, s, p: prestop_shell(d, s, p, ["sh", "-c", "sleep 5"], "nginx:1.27")))

case("exec-liveness-cost",
  "an exec liveness probe every 5s",
  variant(lambda d, s, p: ctr(d)["livenessProbe"].update(periodSeconds=5, failureThreshold=4)),
  "the same probe every 10s",
  variant(lambda d, s, p: None))

case("wedge-restart",
  "LIVE_MAX_AGE 30s, liveness every 15s x 3 and the pod's 35s grace (the project's own old values)",
  variant(lambda d, s, p: (setenv(d, "LIVE_MAX_AGE", "30s"), ctr(d)["livenessProbe"].update(periodSeconds=15, failureThreshold=3),
                           ctr(d)["livenessProbe"].pop("terminationGracePeriodSeconds"))),
  "LIVE_MAX_AGE 20s, 10s x 2 and a probe-level grace of 10s: 50s",
  variant(lambda d, s, p: None))

case("rollout-all-at-once",
  "one replica, maxSurge 0 and maxUnavailable 1",
  variant(lambda d, s, p: d["spec"]["strategy"]["rollingUpdate"].update(maxSurge=0, maxUnavailable=1), replicas=1),
  "one replica, maxSurge 1 and maxUnavailable 0",
  variant(lambda d, s, p: p["spec"].update(minAvailable=0), replicas=1))

case("pdb-blocks-eviction",
  "minAvailable 2 of 2 replicas",
  variant(lambda d, s, p: p["spec"].update(minAvailable=2)),
  "minAvailable 1 of 2",
  variant(lambda d, s, p: None))

case("pdb-allows-all",
  "maxUnavailable 100% over 3 replicas",
  variant(lambda d, s, p: (p["spec"].pop("minAvailable"), p["spec"].update(maxUnavailable="100%")), replicas=3),
  "maxUnavailable 1 over 3 replicas",
  variant(lambda d, s, p: (p["spec"].pop("minAvailable"), p["spec"].update(maxUnavailable=1)), replicas=3))

def notready(d, s, p):
    setenv(d, "DRAIN_READINESS", "not-ready")
    ctr(d)["readinessProbe"]["failureThreshold"] = 2
    setenv(d, "DRAIN_DELAY", "7s")
    p["spec"]["minAvailable"] = 0
case("readiness-at-signal",
  "one replica not ready at SIGTERM",
  variant(notready, replicas=1),
  "two replicas not ready at SIGTERM, one kept by the budget",
  variant(lambda d, s, p: (notready(d, s, p), p["spec"].update(minAvailable=1))))

case("readiness-single-failure",
  "readiness on /readyz with failureThreshold 1",
  variant(lambda d, s, p: ctr(d)["readinessProbe"].update(failureThreshold=1, httpGet={"path": "/readyz", "port": "admin"})),
  "the same with failureThreshold 2",
  variant(lambda d, s, p: ctr(d)["readinessProbe"].update(httpGet={"path": "/readyz", "port": "admin"})))

def tcp_probe(d, s, p, port):
    ctr(d)["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 2, "failureThreshold": 2}
case("readiness-port-not-routed",
  "a tcpSocket readiness probe on a metrics port the Service does not route",
  variant(lambda d, s, p: (ctr(d)["ports"].append({"name": "metrics", "containerPort": 9100}), tcp_probe(d, s, p, "metrics"))),
  "the probe on pkg/health's admin port (ADMIN_ADDR), which answers for every server",
  variant(lambda d, s, p: None))

case("drain-delay-short",
  "DRAIN_DELAY 1s with readiness every 5s",
  variant(lambda d, s, p: (setenv(d, "DRAIN_DELAY", "1s"), ctr(d)["readinessProbe"].update(periodSeconds=5))),
  "DRAIN_DELAY 7s with readiness every 5s",
  variant(lambda d, s, p: (setenv(d, "DRAIN_DELAY", "7s"), ctr(d)["readinessProbe"].update(periodSeconds=5))))

case("prestop-and-drain-delay",
  "a preStop sleep of 5s on top of DRAIN_DELAY 5s",
  variant(lambda d, s, p: (ctr(d).update(lifecycle={"preStop": {"sleep": {"seconds": 5}}}), pod(d).update(terminationGracePeriodSeconds=40))),
  "a preStop sleep with DRAIN_DELAY none",
  variant(lambda d, s, p: (ctr(d).update(lifecycle={"preStop": {"sleep": {"seconds": 5}}}), setenv(d, "DRAIN_DELAY", "none"),
                           pod(d).update(terminationGracePeriodSeconds=40))))

case("stop-signal",
  "stopSignal SIGUSR1 for a pkg/health service",
  variant(lambda d, s, p: (ctr(d).update(lifecycle={"stopSignal": "SIGUSR1"}), pod(d).update(os={"name": "linux"}))),
  "stopSignal SIGINT with spec.os.name",
  variant(lambda d, s, p: (ctr(d).update(lifecycle={"stopSignal": "SIGINT"}), pod(d).update(os={"name": "linux"}))))

def sidecar(d, s, p, shutdown):
    pod(d)["initContainers"] = [{"name": "proxy", "image": "registry.example/proxy:1.0", "restartPolicy": "Always",
                                  "env": [{"name": "SHUTDOWN_TIMEOUT", "value": shutdown}, {"name": "DRAIN_DELAY", "value": "none"}]}]
case("sidecar-grace",
  "a native sidecar proxy draining for 15s after the app's 25s, in a 35s grace",
  variant(lambda d, s, p: sidecar(d, s, p, "15s")),
  "the same sidecar draining for 5s",
  variant(lambda d, s, p: sidecar(d, s, p, "5s")))

case("kube-version",
  "preStop sleep of 0 seconds, which needs 1.34 (targets 1.33)",
  variant(lambda d, s, p: ctr(d).update(lifecycle={"preStop": {"sleep": {"seconds": 0}}})),
  "preStop sleep of 5 seconds (1.30) in place of DRAIN_DELAY",
  variant(lambda d, s, p: (ctr(d).update(lifecycle={"preStop": {"sleep": {"seconds": 5}}}), setenv(d, "DRAIN_DELAY", "none"),
                           pod(d).update(terminationGracePeriodSeconds=40))))

case("service-target-port",
  "a Service targetPort name no container declares",
  variant(lambda d, s, p: s["spec"]["ports"][0].update(targetPort="web")),
  "targetPort the container port's name",
  variant(lambda d, s, p: None))

case("readiness-missing",
  "a container the Service routes with no readiness probe (a chart that sets only liveness)",
  variant(lambda d, s, p: ctr(d).pop("readinessProbe")),
  "the same with its readiness probe",
  variant(lambda d, s, p: None))

case("probes-same",
  "liveness asks the readiness endpoint /ready (a chart that copies one probe to the other)",
  variant(lambda d, s, p: ctr(d).update(livenessProbe={"httpGet": {"path": "/ready", "port": "admin"}, "periodSeconds": 10})),
  "liveness and readiness both ask /healthz, which says nothing of what it checks",
  variant(lambda d, s, p: ctr(d).update(readinessProbe={"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 2, "failureThreshold": 2},
                                        livenessProbe={"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10})))

def plain(d):  # a server that does not embed the library
    ctr(d)["env"] = []
    ctr(d)["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10}

case("grace-short",
  "a plain gRPC-style server with terminationGracePeriodSeconds 5 and no preStop (the microservices demo's shape)",
  variant(lambda d, s, p: (plain(d), pod(d).update(terminationGracePeriodSeconds=5))),
  "the same server with a preStop sleep of 5s and a 30s grace",
  variant(lambda d, s, p: (plain(d), pod(d).update(terminationGracePeriodSeconds=30),
                           ctr(d).update(lifecycle={"preStop": {"sleep": {"seconds": 5}}}))))

def webhook(replicas=2, budget=True, prestop=5, policy=None):
    # A kubebuilder-scaffolded operator: the manager serves its admission
    # webhook on 9443 behind webhook-service, called by a
    # ValidatingWebhookConfiguration. policy None is the v1 default, Fail.
    labels = {"control-plane": "controller-manager"}
    c = {"name": "manager", "image": "registry.example/operator:1.0", "command": ["/manager"], "args": ["--leader-elect"],
         "ports": [{"name": "webhook-server", "containerPort": 9443}],
         "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 10},
         "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8081}, "periodSeconds": 10}}
    if prestop:
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": prestop}}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "controller-manager", "namespace": "operator-system"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"terminationGracePeriodSeconds": 30, "containers": [c]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook-service", "namespace": "operator-system"},
           "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": "webhook-server"}]}}
    hook = {"name": "vwidget.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "webhook-service", "namespace": "operator-system", "path": "/validate-widget"}},
            "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["widgets"]}]}
    if policy:
        hook["failurePolicy"] = policy
    cfg = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "operator-validating-webhook-configuration"}, "webhooks": [hook]}
    docs = [dep, svc, cfg]
    if budget:
        docs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "controller-manager", "namespace": "operator-system"},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})
    return docs

case("webhook-single-replica",
  "kubebuilder's scaffold: one replica serves a webhook whose failurePolicy defaults to Fail",
  webhook(replicas=1, budget=False),
  "two replicas and a budget of minAvailable 1",
  webhook())

case("webhook-pdb-missing",
  "three replicas serve a failurePolicy Fail webhook and no budget selects them",
  webhook(replicas=3, budget=False, policy="Fail"),
  "the same with a budget of minAvailable 1",
  webhook(replicas=3, policy="Fail"))

case("webhook-no-delay",
  "the webhook server stops at SIGTERM: no preStop sleep, no DRAIN_DELAY",
  webhook(prestop=0),
  "the same with a preStop sleep of 5s",
  webhook())

root = "cmd/drainwell/vet/testdata/corpus"
for rule, ((nf, f), (nm, m)) in cases.items():
    os.makedirs(os.path.join(root, rule), exist_ok=True)
    for name, note, docs in (("fires.yaml", nf, f), ("near-miss.yaml", nm, m)):
        with open(os.path.join(root, rule, name), "w") as fh:
            fh.write("# %s: %s\n" % (rule, note))
            fh.write("# Generated by cmd/drainwell/vet/testdata/gencorpus.py.\n")
            fh.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False))
