module github.com/elemta/elemta

go 1.26.0
