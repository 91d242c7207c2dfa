// kubecheck decodes Kubernetes manifests strictly into the API's own Go types
// (k8s.io/api), so a misspelt or misplaced field is an error, with no cluster and no
// downloaded schemas. Used by tests/deploy_manifests.rs when Go is installed.
//
//	go run . FILE...    (multi-document YAML; exits 1 naming the file, kind and error)
package main

import (
	"fmt"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

func object(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

func main() {
	failed := false
	checked := 0
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for i, doc := range strings.Split("\n"+string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				fmt.Printf("%s document %d: %v\n", path, i, err)
				failed = true
				continue
			}
			obj, ok := object(meta.APIVersion, meta.Kind)
			if !ok {
				fmt.Printf("%s document %d: unknown apiVersion/kind %s %s\n", path, i, meta.APIVersion, meta.Kind)
				failed = true
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				fmt.Printf("%s document %d (%s): %v\n", path, i, meta.Kind, err)
				failed = true
				continue
			}
			checked++
		}
	}
	fmt.Printf("kubecheck: %d objects decoded strictly\n", checked)
	if failed {
		os.Exit(1)
	}
}
