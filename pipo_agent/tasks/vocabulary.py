"""Plain lowercase English words for the ``strings`` family (3 to 8 letters, no duplicates)."""

from typing import Final

_WORD_TEXT: Final = """
    able acid actor adult aged agent alarm album alert alley amber angle ankle apple apron arena arrow
    artist aunt autumn avenue award badge baker ball bamboo banana band bank barn basket beach bean bear
    bell belt bench berry bird blade blanket block bloom board boat bone book boot bottle bowl brain
    branch brass bread brick bridge brush bucket button cabin cable camel camera candle canoe canvas cargo
    carpet castle cattle cave cedar chain chair chalk cheese cherry chess chest chimney circle city clay
    cliff clock cloud clover coach coast coffee coin comet copper coral cotton couch crane crayon creek
    crown crystal cup curtain daisy dance desert desk diamond dinner doctor dolphin door dragon drawer
    dream drum eagle earth echo engine fabric falcon farm feather fence field finger flame flute forest
    fossil fountain fox frost garden garlic giant ginger glass globe glove goat gold grape grass guitar
    hammer harbor harp hat hawk helmet hill honey horse island ivory jacket jelly jewel jungle kettle key
    kitten ladder lake lamp lantern lemon letter lily lion lizard lobster magnet mango maple marble market
    meadow melon mirror monkey moon motor mountain mouse needle nest night noodle ocean olive onion orange
    orbit otter owl paddle palace panda paper parrot pearl pencil pepper piano pillow pilot planet plum
    pocket pony potato puzzle quilt rabbit radio rain raven ribbon river robot rocket rose saddle salad
    salmon sand scarf school shell ship shovel silver sketch sleeve snail spider spoon square squirrel
    stamp star stone storm sugar summer sunset swan table teapot tiger timber toast tomato tower tractor
    train tree trumpet tulip tunnel turtle umbrella valley velvet violin wagon walnut water whale wheel
    willow window winter wizard wolf wool yacht yarn zebra
"""

WORDS: Final[tuple[str, ...]] = tuple(_WORD_TEXT.split())
