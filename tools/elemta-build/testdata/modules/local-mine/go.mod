module example.com/mine

go 1.26.0

require github.com/elemta/elemta v1.0.0
