-- One row per phone or e-mail of an amoCRM contact, normalised by warehouse/contact_points.py.
-- raw.contact_points holds the points of every source; this model keeps the amoCRM ones.
with

source as (

    select * from {{ source('voronka_derived', 'contact_points') }}
    where source = 'amocrm'

),

renamed as (

    select
        account,
        cast(contact_id as bigint) as contact_id,
        kind as point_kind,
        value_raw,
        value_normalized,
        value_normalized is not null as is_valid
    from source

)

select distinct * from renamed
