module example.com/needsnewgood

go 1.26.0

require github.com/elemta/elemta v1.0.0

require example.com/good v1.1.0
