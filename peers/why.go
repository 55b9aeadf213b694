package peers

const kubectlWhy = `TODO`

const upgradeAwareWhy = `TODO`
