module github.com/execconform/execconform/e2e/tools/images

go 1.24
