module example.com/liar

go 1.26.0

require github.com/elemta/elemta v1.0.0
