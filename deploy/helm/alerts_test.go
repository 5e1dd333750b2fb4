package helm_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/delegation-program/uptime-coordinator/alerting/outbound"
	"github.com/delegation-program/uptime-coordinator/alerting/subscriptions"
	"github.com/delegation-program/uptime-coordinator/config"
	"github.com/delegation-program/uptime-coordinator/deploy/helm/helmtest"
)

// alertValues are the production values plus every alert value of ours.
func alertValues(t *testing.T) map[string]any {
	t.Helper()
	v := productionValues(t)
	v["alerts"] = map[string]any{
		"webhookURL":           "https://hooks.slack.com/services/T0/B0/slack-Secret-6",
		"producerDropPercent":  30,
		"validSharePercent":    "80",
		"zkLowerLimitSec":      "5",
		"zkUpperLimitSec":      "600",
		"allowPrivateNetworks": true,
		"drainTimeout":         "45s",
		"retryBase":            "2s",
		"ratePerMinute":        "20",
		"subscriptions": []any{map[string]any{
			"name": "acme", "producers": "*", "channel": "webhook", "url": "http://127.0.0.1:9/hook",
			"secret": "hook-Secret-7-0123456789", "rules": []any{map[string]any{"kind": "missed_batches", "count": 6}},
		}},
	}
	v["serve"] = map[string]any{"enabled": true, "publicURL": "https://uptime.example.org", "adminAPIToken": "admin-Secret-8"}
	return v
}

// TestAlertValues: the alert settings and ADMIN_API_TOKEN reach the
// coordinator and serve through the configuration loader, the secrets only
// through the chart's Secret (never a plain value), the subscriptions file
// as a mounted Secret key that the coordinator's own parser accepts.
func TestAlertValues(t *testing.T) {
	r := render(t, alertValues(t))
	secrets := []string{"slack-Secret-6", "hook-Secret-7", "admin-Secret-8"}
	for _, d := range helmtest.Find[*appsv1.Deployment](r.objs) {
		for _, c := range append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...) {
			for _, e := range c.Env {
				for _, s := range secrets {
					if strings.Contains(e.Value, s) {
						t.Errorf("%s/%s: %s holds a secret as a plain value", d.Name, c.Name, e.Name)
					}
				}
			}
		}
	}
	s := r.secrets["delegation-verify-coordinator"]
	if s == nil {
		t.Fatal("no Secret")
	}
	for _, k := range []string{"WEBHOOK_URL", "ADMIN_API_TOKEN", "alert-subscriptions.yaml"} {
		if len(s.Data[k]) == 0 {
			t.Errorf("the Secret lacks %s", k)
		}
	}

	// The coordinator.
	pod := r.dep.Spec.Template.Spec
	main := containerNamed(pod.Containers, "coordinator")
	cfg := r.load(t, main)
	a := cfg.Alerts
	if a.WebhookURL != "https://hooks.slack.com/services/T0/B0/slack-Secret-6" || a.ProducerDropPercent != 30 ||
		a.ValidSharePercent == nil || *a.ValidSharePercent != 80 || a.ZKLowerLimit == nil || a.ZKLowerLimit.String() != "5s" ||
		a.ZKUpperLimit == nil || a.ZKUpperLimit.String() != "10m0s" || !a.AllowPrivateNetworks || a.DrainTimeout.String() != "45s" ||
		a.RetryBase.String() != "2s" || a.RatePerMinute != 20 || a.PublicURL != "https://uptime.example.org" ||
		a.SubscriptionsFile != "/etc/uptime-coordinator/alerts/alert-subscriptions.yaml" {
		t.Errorf("coordinator alerts config %+v", a)
	}
	if a.AdminAPIToken != "" {
		t.Error("the coordinator gets ADMIN_API_TOKEN, which only serve uses")
	}
	// The file the coordinator opens is the Secret's key, mounted read-only.
	var mounted bool
	for _, m := range main.VolumeMounts {
		if m.Name == "alert-subscriptions" && m.MountPath == filepath.Dir(a.SubscriptionsFile) && m.ReadOnly {
			mounted = true
		}
	}
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == "alert-subscriptions" {
			vol = &pod.Volumes[i]
		}
	}
	if !mounted || vol == nil || vol.Secret == nil || vol.Secret.SecretName != "delegation-verify-coordinator" ||
		len(vol.Secret.Items) != 1 || vol.Secret.Items[0] != (corev1.KeyToPath{Key: "alert-subscriptions.yaml", Path: filepath.Base(a.SubscriptionsFile)}) {
		t.Fatalf("subscriptions volume %+v, mounts %+v", vol, main.VolumeMounts)
	}
	path := filepath.Join(t.TempDir(), "alert-subscriptions.yaml")
	if err := os.WriteFile(path, s.Data["alert-subscriptions.yaml"], 0o600); err != nil {
		t.Fatal(err)
	}
	store := &subscriptions.Service{Policy: outbound.Policy{AllowPrivate: true}}
	entries, err := store.ReadFile(context.Background(), path)
	if err != nil {
		t.Fatalf("the mounted subscriptions file is refused: %v", err)
	}
	if len(entries) != 1 || entries[0].Name != "acme" || entries[0].Channel != "webhook" || entries[0].Secret != "hook-Secret-7-0123456789" {
		t.Errorf("subscriptions %+v", entries)
	}

	// serve.
	var serve corev1.Container
	for _, d := range helmtest.Find[*appsv1.Deployment](r.objs) {
		if d.Name == "delegation-verify-coordinator-serve" {
			serve = d.Spec.Template.Spec.Containers[0]
		}
	}
	env := r.env(t, serve)
	serveCfg, err := config.LoadServe(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("serve refuses its environment: %v", err)
	}
	if serveCfg.AdminAPIToken != "admin-Secret-8" || !serveCfg.AlertAllowPrivateNetworks {
		t.Errorf("serve: admin token set %v, private networks %v", serveCfg.AdminAPIToken != "", serveCfg.AlertAllowPrivateNetworks)
	}
}

// TestAlertValuesWithExistingSecret: with the operator's own Secret, the
// webhook URL and the admin token are read from its keys, the subscriptions
// file is mounted from it on request, and a secret value given in the chart's
// values is refused (it would otherwise be ignored silently).
func TestAlertValuesWithExistingSecret(t *testing.T) {
	v := productionValues(t)
	v["workerSecret"] = map[string]any{"existingSecret": "ops-managed"}
	v["alerts"] = map[string]any{"subscriptionsFromExistingSecret": true}
	v["serve"] = map[string]any{"enabled": true}
	r := render(t, v)
	refs := map[string]string{}
	for _, d := range helmtest.Find[*appsv1.Deployment](r.objs) {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && *e.ValueFrom.SecretKeyRef.Optional {
				refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
			if e.Name == "ALERT_SUBSCRIPTIONS_FILE" && e.Value != "/etc/uptime-coordinator/alerts/alert-subscriptions.yaml" {
				t.Errorf("ALERT_SUBSCRIPTIONS_FILE %q", e.Value)
			}
		}
	}
	if refs["WEBHOOK_URL"] != "ops-managed/WEBHOOK_URL" || refs["ADMIN_API_TOKEN"] != "ops-managed/ADMIN_API_TOKEN" {
		t.Errorf("optional Secret references %v", refs)
	}
	var found bool
	for _, vol := range r.dep.Spec.Template.Spec.Volumes {
		if vol.Name == "alert-subscriptions" && vol.Secret != nil && vol.Secret.SecretName == "ops-managed" {
			found = true
		}
	}
	if !found {
		t.Errorf("no subscriptions volume from the existing Secret: %+v", r.dep.Spec.Template.Spec.Volumes)
	}

	for key, set := range map[string]func(v map[string]any){
		"alerts.webhookURL": func(v map[string]any) {
			v["alerts"] = map[string]any{"webhookURL": "https://hooks.slack.com/services/x"}
		},
		"serve.adminAPIToken": func(v map[string]any) { v["serve"] = map[string]any{"adminAPIToken": "t"} },
	} {
		v := productionValues(t)
		v["workerSecret"] = map[string]any{"existingSecret": "ops-managed"}
		set(v)
		if _, err := helmtest.Render(release, v); err == nil || !strings.Contains(err.Error(), key+" is set, but workerSecret.existingSecret") {
			t.Errorf("%s with an existing Secret: %v", key, err)
		}
	}
}
