package argocd

const why = `TODO`
